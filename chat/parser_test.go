package chat

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

var testTools = []Tool{
	{Type: "function", Function: ToolFunction{Name: "get_weather", Parameters: json.RawMessage(`{
		"type": "object",
		"properties": {
			"city": {"type": "string"},
			"days": {"type": "integer"},
			"ratio": {"type": "number"},
			"hourly": {"type": "boolean"},
			"detail": {"type": "object"},
			"cities": {"type": "array", "items": {"type": "string"}},
			"unit": {"enum": ["c", "f"]},
			"maybe": {"type": ["integer", "null"]},
			"either": {"anyOf": [{"type": "integer"}, {"type": "string"}]}
		}}`)}},
	{Type: "function", Function: ToolFunction{Name: "bash", Parameters: json.RawMessage(`{
		"type": "object", "properties": {"command": {"type": "string"}}}`)}},
}

// seqIDs makes deterministic IDs so chunked and one-shot runs compare equal.
func seqIDs() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("call_%d", n) }
}

func testOpts(reasoning bool) ParserOptions {
	return ParserOptions{Tools: testTools, StartInReasoning: reasoning, NewID: seqIDs()}
}

// normalize merges adjacent text events of one kind: how text is split
// between events is the one thing chunking may change.
func normalize(events []Event) []Event {
	var out []Event
	for _, e := range events {
		if n := len(out); n > 0 && (e.Kind == EventContent || e.Kind == EventReasoning) && !e.Unparsed {
			if last := &out[n-1]; last.Kind == e.Kind && !last.Unparsed {
				last.Text += e.Text
				continue
			}
		}
		if e.Text == "" && (e.Kind == EventContent || e.Kind == EventReasoning) {
			continue
		}
		out = append(out, e)
	}
	return out
}

func feedChunks(opts ParserOptions, chunks []string) []Event {
	p := NewParser(opts)
	var ev []Event
	for _, c := range chunks {
		ev = append(ev, p.Feed(c)...)
	}
	return append(ev, p.Close()...)
}

func oneShot(reasoning bool, text string) []Event {
	return normalize(feedChunks(testOpts(reasoning), []string{text}))
}

func randomChunks(r *rand.Rand, s string) []string {
	var out []string
	for len(s) > 0 {
		n := 1 + r.IntN(min(len(s), 12))
		out = append(out, s[:n])
		s = s[n:]
	}
	return out
}

// checkEvents asserts invariants every event stream must satisfy.
func checkEvents(t testing.TB, events []Event) {
	t.Helper()
	args := map[int]string{}
	named := map[int]bool{}
	for _, e := range events {
		switch e.Kind {
		case EventToolCallDelta:
			d := e.Delta
			if d == nil {
				t.Fatalf("delta event without Delta")
			}
			if d.Function.Name != "" {
				if named[d.Index] {
					t.Fatalf("call %d named twice", d.Index)
				}
				if d.ID == "" || d.Type != "function" {
					t.Fatalf("first delta of call %d lacks id/type: %+v", d.Index, d)
				}
				named[d.Index] = true
			} else if !named[d.Index] {
				t.Fatalf("arguments delta for call %d before its name", d.Index)
			}
			args[d.Index] += d.Function.Arguments
		case EventToolCall:
			c := e.Call
			if got := args[e.Index]; got != c.Function.Arguments {
				t.Fatalf("call %d: deltas concatenate to %q, final arguments %q", e.Index, got, c.Function.Arguments)
			}
			var obj map[string]any
			if err := json.Unmarshal([]byte(c.Function.Arguments), &obj); err != nil {
				t.Fatalf("call %d arguments are not a JSON object: %q: %v", e.Index, c.Function.Arguments, err)
			}
		case EventContent, EventReasoning:
			if !e.Unparsed && strings.Trim(e.Text, spaces) == "" && e.Text != "" {
				t.Fatalf("whitespace-only %s event %q", e.Kind, e.Text)
			}
		}
	}
}

// checkChunkings asserts that every way of splitting text parses alike.
func checkChunkings(t *testing.T, reasoning bool, text string) []Event {
	t.Helper()
	want := oneShot(reasoning, text)
	checkEvents(t, want)
	for i := 0; i <= len(text); i++ {
		got := normalize(feedChunks(testOpts(reasoning), []string{text[:i], text[i:]}))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("split at byte %d differs:\n got %s\nwant %s", i, dump(got), dump(want))
		}
	}
	bytes := make([]string, len(text))
	for i := 0; i < len(text); i++ {
		bytes[i] = text[i : i+1]
	}
	raw := feedChunks(testOpts(reasoning), bytes)
	checkEvents(t, raw)
	if got := normalize(raw); !reflect.DeepEqual(got, want) {
		t.Fatalf("byte-by-byte feed differs:\n got %s\nwant %s", dump(got), dump(want))
	}
	r := rand.New(rand.NewPCG(1, uint64(len(text))))
	for range 50 {
		chunks := randomChunks(r, text)
		if got := normalize(feedChunks(testOpts(reasoning), chunks)); !reflect.DeepEqual(got, want) {
			t.Fatalf("chunking %q differs:\n got %s\nwant %s", chunks, dump(got), dump(want))
		}
	}
	return want
}

func dump(events []Event) string {
	var b strings.Builder
	for _, e := range events {
		switch e.Kind {
		case EventToolCallDelta:
			fmt.Fprintf(&b, "\n  delta %+v", *e.Delta)
		case EventToolCall:
			fmt.Fprintf(&b, "\n  call[%d] %+v", e.Index, *e.Call)
		default:
			fmt.Fprintf(&b, "\n  %s %q unparsed=%v index=%d problem=%q", e.Kind, e.Text, e.Unparsed, e.Index, e.Problem)
		}
	}
	return b.String()
}

type parseCase struct {
	name      string
	reasoning bool
	text      string
	want      Result
}

func call(id, name, args string) ToolCall {
	return ToolCall{ID: id, Type: "function", Function: FunctionCall{Name: name, Arguments: args}}
}

var parseCases = []parseCase{
	{name: "plain content", text: "Hello, world!", want: Result{Content: "Hello, world!"}},
	{name: "content trimmed", text: "\n\n  Hello\n\n", want: Result{Content: "Hello"}},
	{name: "less-than signs are text", text: "a < b, c<d, x <tool and <thinking>", want: Result{Content: "a < b, c<d, x <tool and <thinking>"}},
	{name: "cut-off tag at end is text", text: "Hello <tool_ca", want: Result{Content: "Hello <tool_ca"}},
	{name: "starts in reasoning", reasoning: true,
		text: "The user greets me.\nI reply.\n</think>\n\nHi there!",
		want: Result{Reasoning: "The user greets me.\nI reply.", Content: "Hi there!"}},
	{name: "reasoning never closed", reasoning: true, text: "still thinking about", want: Result{Reasoning: "still thinking about"}},
	{name: "model opens think itself", text: "<think>\nhmm\n</think>\n\nDone.", want: Result{Reasoning: "hmm", Content: "Done."}},
	{name: "think after answer text is text", text: "Use the <think> tag.", want: Result{Content: "Use the <think> tag."}},
	{name: "stray think end in content is text", text: "a </think> b", want: Result{Content: "a </think> b"}},
	{name: "single call typed",
		text: "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
		want: Result{ToolCalls: []ToolCall{call("call_1", "get_weather", `{"city":"Paris","days":3}`)}}},
	{name: "text before and after calls, two calls",
		text: "I'll check both.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n<parameter=unit>\nc\n</parameter>\n</function>\n</tool_call>\nWaiting.",
		want: Result{Content: "I'll check both.Waiting.", ToolCalls: []ToolCall{
			call("call_1", "get_weather", `{"city":"Paris"}`),
			call("call_2", "get_weather", `{"city":"Oslo","unit":"c"}`)}}},
	{name: "inline values and no newlines",
		text: "<tool_call><function=get_weather><parameter=city>Rome</parameter><parameter=hourly>True</parameter></function></tool_call>",
		want: Result{ToolCalls: []ToolCall{call("call_1", "get_weather", `{"city":"Rome","hourly":true}`)}}},
	{name: "multi-line string keeps inner newlines",
		text: "<tool_call>\n<function=bash>\n<parameter=command>\n\ncat <<EOF\nline 1\n  indented\nEOF\n\n</parameter>\n</function>\n</tool_call>",
		want: Result{ToolCalls: []ToolCall{call("call_1", "bash", `{"command":"\ncat <<EOF\nline 1\n  indented\nEOF\n"}`)}}},
	{name: "nested JSON values",
		text: "<tool_call>\n<function=get_weather>\n<parameter=detail>\n{\"a\": {\"b\": [1, {\"c\": \"x</y <z>\"}]}, \"d\": null}\n</parameter>\n<parameter=cities>\n[\"Paris\", \"Oslo\"]\n</parameter>\n</function>\n</tool_call>",
		want: Result{ToolCalls: []ToolCall{call("call_1", "get_weather", `{"detail":{"a":{"b":[1,{"c":"x</y <z>"}]},"d":null},"cities":["Paris","Oslo"]}`)}}},
	{name: "type conversions and fallbacks",
		text: "<tool_call>\n<function=get_weather>\n<parameter=days>\nthree\n</parameter>\n<parameter=ratio>\n0.50\n</parameter>\n<parameter=hourly>\nFALSE\n</parameter>\n<parameter=maybe>\nnull\n</parameter>\n<parameter=either>\n12\n</parameter>\n<parameter=city>\nnull\n</parameter>\n<parameter=detail>\nnot json\n</parameter>\n<parameter=extra>\n42\n</parameter>\n</function>\n</tool_call>",
		want: Result{ToolCalls: []ToolCall{call("call_1", "get_weather",
			`{"days":"three","ratio":0.50,"hourly":false,"maybe":null,"either":12,"city":"null","detail":"not json","extra":"42"}`)}}},
	{name: "unknown tool keeps strings",
		text: "<tool_call>\n<function=other>\n<parameter=n>\n5\n</parameter>\n</function>\n</tool_call>",
		want: Result{ToolCalls: []ToolCall{call("call_1", "other", `{"n":"5"}`)}}},
	{name: "non-ASCII values",
		text: "Voilà 😀\n<tool_call>\n<function=get_weather>\n<parameter=city>\n北京 — Zürich 🌧\n</parameter>\n</function>\n</tool_call>",
		want: Result{Content: "Voilà 😀", ToolCalls: []ToolCall{call("call_1", "get_weather", `{"city":"北京 — Zürich 🌧"}`)}}},
	{name: "missing closing tags",
		text: "<tool_call>\n<function=get_weather>\n<parameter=city>\nLima\n<parameter=days>\n2\n</function>\n<tool_call>\n<function=bash>\n<parameter=command>\npwd\n</tool_call>after",
		want: Result{Content: "after", ToolCalls: []ToolCall{
			call("call_1", "get_weather", `{"city":"Lima","days":2}`),
			call("call_2", "bash", `{"command":"pwd"}`)}}},
	{name: "two functions in one tool_call",
		text: "<tool_call>\n<function=bash>\n<parameter=command>\nls\n</parameter>\n</function>\n<function=bash>\n<parameter=command>\npwd\n</parameter>\n</function>\n</tool_call>",
		want: Result{ToolCalls: []ToolCall{call("call_1", "bash", `{"command":"ls"}`), call("call_2", "bash", `{"command":"pwd"}`)}}},
	{name: "no parameters",
		text: "<tool_call>\n<function=bash>\n</function>\n</tool_call>",
		want: Result{ToolCalls: []ToolCall{call("call_1", "bash", `{}`)}}},
	{name: "tool call ends reasoning", reasoning: true,
		text: "I need the weather.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n</function>\n</tool_call>",
		want: Result{Reasoning: "I need the weather.", ToolCalls: []ToolCall{call("call_1", "get_weather", `{"city":"Oslo"}`)}}},
	{name: "qwen3 json call",
		text: "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\", \"days\": 2}}\n</tool_call>\n<tool_call>\n{\"name\": \"bash\", \"arguments\": \"{\\\"command\\\": \\\"ls\\\"}\"}\n</tool_call>",
		want: Result{Content: "Checking.", ToolCalls: []ToolCall{
			call("call_1", "get_weather", `{"city":"Oslo","days":2}`),
			call("call_2", "bash", `{"command":"ls"}`)}}},
	{name: "qwen3 json call unterminated but complete",
		text: "<tool_call>\n{\"name\": \"bash\", \"arguments\": {}}",
		want: Result{ToolCalls: []ToolCall{call("call_1", "bash", `{}`)}}},
	{name: "qwen3 json call after reasoning", reasoning: true,
		text: "I should look it up.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\", \"detail\": {\"a\": [1, \"x</y\"]}}}\n</tool_call>",
		want: Result{Reasoning: "I should look it up.", ToolCalls: []ToolCall{call("call_1", "get_weather", `{"city":"Zürich","detail":{"a":[1,"x</y"]}}`)}}},
	{name: "qwen3 json arguments not an object",
		text: "<tool_call>\n{\"name\": \"bash\", \"arguments\": [\"ls\"]}\n</tool_call>",
		want: Result{Content: "<tool_call>\n{\"name\": \"bash\", \"arguments\": [\"ls\"]}\n</tool_call>", Unparsed: true}},
	{name: "qwen3 json without a name",
		text: "<tool_call>\n{\"arguments\": {}}\n</tool_call>",
		want: Result{Content: "<tool_call>\n{\"arguments\": {}}\n</tool_call>", Unparsed: true}},
	{name: "unterminated call at close",
		text: "Sure.\n<tool_call>\n<function=bash>\n<parameter=command>\nls -la",
		want: Result{Content: "Sure.<tool_call>\n<function=bash>\n<parameter=command>\nls -la", Unparsed: true}},
	{name: "unterminated function name at close",
		text: "<tool_call>\n<function=ba",
		want: Result{Content: "<tool_call>\n<function=ba", Unparsed: true}},
	{name: "malformed call body",
		text: "<tool_call>\nnot a call</tool_call> ok",
		want: Result{Content: "<tool_call>\nnot a call</tool_call> ok", Unparsed: true}},
	{name: "malformed json call",
		text: "<tool_call>\n{\"name\": broken}\n</tool_call>\nthen text",
		want: Result{Content: "<tool_call>\n{\"name\": broken}\n</tool_call>then text", Unparsed: true}},
	{name: "newline in function name is malformed",
		text: "<tool_call>\n<function=a\nb>\n</function>\n</tool_call>",
		want: Result{Content: "<tool_call>\n<function=a\nb>\n</function>\n</tool_call>", Unparsed: true}},
	{name: "garbage between parameters abandons call",
		text: "<tool_call>\n<function=bash>\n<parameter=command>\nls\n</parameter>\noops\n</function>\n</tool_call>",
		want: Result{Content: "<tool_call>\n<function=bash>\n<parameter=command>\nls\n</parameter>\noops\n</function>\n</tool_call>", Unparsed: true}},
}

func TestParserCases(t *testing.T) {
	for _, c := range parseCases {
		t.Run(c.name, func(t *testing.T) {
			events := checkChunkings(t, c.reasoning, c.text)
			got := Collect(events)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("parse result\n got %+v\nwant %+v\nevents:%s", got, c.want, dump(events))
			}
			if p := Parse(c.text, testOpts(c.reasoning)); !reflect.DeepEqual(p, c.want) {
				t.Fatalf("Parse differs from streamed result: %+v", p)
			}
		})
	}
}

func TestParserDeltas(t *testing.T) {
	text := "Hi\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>"
	events := oneShot(false, text)
	var deltas []ToolCallDelta
	for _, e := range events {
		if e.Kind == EventToolCallDelta {
			deltas = append(deltas, *e.Delta)
		}
	}
	want := []ToolCallDelta{
		{Index: 0, ID: "call_1", Type: "function", Function: FunctionDelta{Name: "get_weather"}},
		{Index: 0, Function: FunctionDelta{Arguments: `{"city":"Paris"`}},
		{Index: 0, Function: FunctionDelta{Arguments: `,"days":2`}},
		{Index: 0, Function: FunctionDelta{Arguments: `}`}},
	}
	if !reflect.DeepEqual(deltas, want) {
		t.Fatalf("deltas\n got %+v\nwant %+v", deltas, want)
	}
	first, _ := json.Marshal(want[0])
	if string(first) != `{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}` {
		t.Fatalf("first delta JSON shape: %s", first)
	}
}

// A call's deltas go out as soon as each parameter is complete, before
// the call is closed.
func TestParserStreamsEarly(t *testing.T) {
	p := NewParser(testOpts(false))
	ev := p.Feed("<tool_call>\n<function=bash>\n<parameter=command>\nls\n</parameter>\n")
	if len(ev) != 2 || ev[0].Delta.Function.Name != "bash" || ev[1].Delta.Function.Arguments != `{"command":"ls"` {
		t.Fatalf("want name and first argument deltas, got %s", dump(ev))
	}
	ev = p.Feed("<parame")
	if len(ev) != 0 {
		t.Fatalf("partial tag must be held, got %s", dump(ev))
	}
}

func TestParserHoldsOnlyAmbiguousText(t *testing.T) {
	p := NewParser(testOpts(false))
	if ev := p.Feed("Hello <"); len(ev) != 1 || ev[0].Text != "Hello" {
		t.Fatalf("want \"Hello\" emitted and \" <\" held, got %s", dump(ev))
	}
	if ev := p.Feed("b>"); len(ev) != 1 || ev[0].Text != " <b>" {
		t.Fatalf("want \" <b>\" once disambiguated, got %s", dump(ev))
	}
	// Half a UTF-8 character is held until it completes.
	euro := "€"
	if ev := p.Feed(" " + euro[:2]); len(ev) != 0 {
		t.Fatalf("half a rune must be held, got %s", dump(ev))
	}
	if ev := p.Feed(euro[2:]); len(ev) != 1 || ev[0].Text != " "+euro {
		t.Fatalf("want completed rune, got %s", dump(ev))
	}
}

func TestParserUnterminatedFlagsIndex(t *testing.T) {
	p := NewParser(testOpts(false))
	ev := p.Feed("<tool_call>\n<function=bash>\n<parameter=command>\nrm")
	ev = append(ev, p.Close()...)
	last := ev[len(ev)-1]
	if !last.Unparsed || last.Index != 0 || last.Text != "<tool_call>\n<function=bash>\n<parameter=command>\nrm" {
		t.Fatalf("want unparsed content for call 0, got %s", dump(ev))
	}
	p = NewParser(testOpts(false))
	ev = append(p.Feed("<tool_call>\n<func"), p.Close()...)
	if len(ev) != 1 || !ev[0].Unparsed || ev[0].Index != -1 {
		t.Fatalf("want unparsed content with no call index, got %s", dump(ev))
	}
	if p.Feed("more") != nil || p.Close() != nil {
		t.Fatal("a closed parser must ignore input")
	}
}

func TestPromptEndsInReasoning(t *testing.T) {
	for prompt, want := range map[string]bool{
		"<|im_start|>assistant\n<think>\n":                true,
		"<|im_start|>assistant\n<think>\n\n</think>\n\n":  false,
		"<|im_start|>assistant\n":                         false,
		"<|im_start|>user\nsay <think><|im_end|>\nassist": false,
	} {
		if got := PromptEndsInReasoning(prompt); got != want {
			t.Errorf("PromptEndsInReasoning(%q) = %v, want %v", prompt, got, want)
		}
	}
}

func TestNewCallID(t *testing.T) {
	a, b := NewCallID(), NewCallID()
	if !strings.HasPrefix(a, "call_") || len(a) != 29 || a == b {
		t.Fatalf("bad ids %q %q", a, b)
	}
}

// Rendering a conversation and parsing the assistant turn back must give
// the same reasoning, content and calls: the parser reads what the
// template writes.
func TestRenderParseRoundTrip(t *testing.T) {
	tpl, err := ParseTemplate(mustRead(t, tinyDir+"/tokenizer/chat_template.jinja"))
	if err != nil {
		t.Fatal(err)
	}
	asst := Message{Role: "assistant", Content: "Let me look.", ReasoningContent: "Need weather and a shell.",
		ToolCalls: []ToolCall{
			call("", "get_weather", `{"city":"Zürich","days":3,"ratio":0.5,"hourly":true,"detail":{"a":[1,{"b":null}]},"cities":["x","y"]}`),
			call("", "bash", `{"command":"printf 'a\\nb' | wc -l\n"}`),
		}}
	prompt, err := tpl.Render([]Message{{Role: "user", Content: "go"}, asst}, testTools, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const open = "<|im_start|>assistant\n"
	turn := prompt[strings.LastIndex(prompt, open)+len(open):]
	turn = strings.TrimSuffix(turn, "<|im_end|>\n")
	got := Parse(turn, testOpts(false))
	if got.Reasoning != asst.ReasoningContent || got.Content != asst.Content || len(got.ToolCalls) != 2 {
		t.Fatalf("round trip: %+v\nfrom turn %q", got, turn)
	}
	for i, c := range got.ToolCalls {
		if c.Function.Name != asst.ToolCalls[i].Function.Name || !jsonEqual(t, c.Function.Arguments, asst.ToolCalls[i].Function.Arguments) {
			t.Errorf("call %d: got %s %s, want %s %s", i, c.Function.Name, c.Function.Arguments,
				asst.ToolCalls[i].Function.Name, asst.ToolCalls[i].Function.Arguments)
		}
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("%q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}
