package chat

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// formatCase is a reply in a family's markup and what it parses to.
type formatCase struct {
	name      string
	reasoning bool
	text      string
	want      Result
	problem   string // substring of the Unparsed event's Problem
}

func formatOpts(f *Format, reasoning bool) ParserOptions {
	return ParserOptions{Tools: testTools, StartInReasoning: reasoning, NewID: seqIDs(), Format: f}
}

// checkFormatChunkings asserts that every way of splitting text parses
// alike in format f: at every byte, byte by byte, and in random chunks.
func checkFormatChunkings(t *testing.T, f *Format, reasoning bool, text string) []Event {
	t.Helper()
	want := normalize(feedChunks(formatOpts(f, reasoning), []string{text}))
	checkEvents(t, want)
	for i := 0; i <= len(text); i++ {
		got := normalize(feedChunks(formatOpts(f, reasoning), []string{text[:i], text[i:]}))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("split at byte %d differs:\n got %s\nwant %s", i, dump(got), dump(want))
		}
	}
	bytes := make([]string, len(text))
	for i := range len(text) {
		bytes[i] = text[i : i+1]
	}
	raw := feedChunks(formatOpts(f, reasoning), bytes)
	checkEvents(t, raw)
	if got := normalize(raw); !reflect.DeepEqual(got, want) {
		t.Fatalf("byte-by-byte feed differs:\n got %s\nwant %s", dump(got), dump(want))
	}
	r := rand.New(rand.NewPCG(2, uint64(len(text))))
	for range 50 {
		chunks := randomChunks(r, text)
		if got := normalize(feedChunks(formatOpts(f, reasoning), chunks)); !reflect.DeepEqual(got, want) {
			t.Fatalf("chunking %q differs:\n got %s\nwant %s", chunks, dump(got), dump(want))
		}
	}
	return want
}

func runFormatCases(t *testing.T, f *Format, cases []formatCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			events := checkFormatChunkings(t, f, c.reasoning, c.text)
			if got := Collect(events); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("parse result\n got %+v\nwant %+v\nevents:%s", got, c.want, dump(events))
			}
			var problems []string
			for _, e := range events {
				if e.Unparsed {
					problems = append(problems, e.Problem)
				}
			}
			switch {
			case c.want.Unparsed && (len(problems) == 0 || !strings.Contains(strings.Join(problems, "|"), c.problem)):
				t.Fatalf("problems %q, want one containing %q", problems, c.problem)
			case !c.want.Unparsed && len(problems) > 0:
				t.Fatalf("unexpected problems %q", problems)
			}
		})
	}
}

func TestGLM45Parser(t *testing.T) {
	runFormatCases(t, FormatGLM45, []formatCase{
		{name: "plain content", text: "Hello <b>there</b> a<b", want: Result{Content: "Hello <b>there</b> a<b"}},
		{name: "reasoning then answer", text: "\n<think>The user greets.</think>\nHi!", want: Result{Reasoning: "The user greets.", Content: "Hi!"}},
		{name: "prompt left inside think", reasoning: true, text: "plan</think>done", want: Result{Reasoning: "plan", Content: "done"}},
		{name: "empty think", text: "\n<think></think>\nJust text.", want: Result{Content: "Just text."}},
		{name: "typed call",
			text: "\n<think></think>\nChecking.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n<arg_key>detail</arg_key>\n<arg_value>{\"hourly\": true}</arg_value>\n</tool_call>",
			want: Result{Content: "Checking.", ToolCalls: []ToolCall{call("call_1", "get_weather", `{"city":"Paris","days":3,"detail":{"hourly":true}}`)}}},
		{name: "two calls, multi-line value, unknown tool",
			text: "<tool_call>bash\n<arg_key>command</arg_key>\n<arg_value>cat <<EOF\nx < y\nEOF\n</arg_value>\n</tool_call>\n<tool_call>other\n<arg_key>n</arg_key>\n<arg_value>5</arg_value>\n</tool_call>",
			want: Result{ToolCalls: []ToolCall{call("call_1", "bash", `{"command":"cat <<EOF\nx < y\nEOF\n"}`), call("call_2", "other", `{"n":"5"}`)}}},
		{name: "no arguments", text: "<tool_call>bash\n</tool_call>", want: Result{ToolCalls: []ToolCall{call("call_1", "bash", `{}`)}}},
		{name: "call inside reasoning ends it", reasoning: true,
			text: "need weather\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n</tool_call>",
			want: Result{Reasoning: "need weather", ToolCalls: []ToolCall{call("call_1", "get_weather", `{"city":"Oslo"}`)}}},
		{name: "value without its end tag", problem: "has no </arg_value>",
			text: "<tool_call>bash\n<arg_key>command</arg_key>\n<arg_value>ls\n</tool_call> after",
			want: Result{Content: "<tool_call>bash\n<arg_key>command</arg_key>\n<arg_value>ls\n</tool_call>after", Unparsed: true}},
		{name: "key without value", problem: "expected <arg_value>",
			text: "<tool_call>bash\n<arg_key>command</arg_key>\n</tool_call>",
			want: Result{Content: "<tool_call>bash\n<arg_key>command</arg_key>\n</tool_call>", Unparsed: true}},
		{name: "argument twice", problem: `"n" given twice`,
			text: "<tool_call>f\n<arg_key>n</arg_key><arg_value>1</arg_value><arg_key>n</arg_key><arg_value>2</arg_value></tool_call>",
			want: Result{Content: "<tool_call>f\n<arg_key>n</arg_key><arg_value>1</arg_value><arg_key>n</arg_key><arg_value>2</arg_value></tool_call>", Unparsed: true}},
		{name: "no function name", problem: "no function name",
			text: "<tool_call>\n<arg_key>a</arg_key><arg_value>1</arg_value></tool_call>",
			want: Result{Content: "<tool_call>\n<arg_key>a</arg_key><arg_value>1</arg_value></tool_call>", Unparsed: true}},
		{name: "cut off at close", problem: "ended before </tool_call>",
			text: "Sure.\n<tool_call>bash\n<arg_key>command</arg_key>\n<arg_value>ls -la",
			want: Result{Content: "Sure.<tool_call>bash\n<arg_key>command</arg_key>\n<arg_value>ls -la", Unparsed: true}},
		{name: "complete call without its end tag at close",
			text: "<tool_call>bash\n<arg_key>command</arg_key>\n<arg_value>pwd</arg_value>\n",
			want: Result{ToolCalls: []ToolCall{call("call_1", "bash", `{"command":"pwd"}`)}}},
		{name: "cut-off opening tag is text", text: "see <tool_ca", want: Result{Content: "see <tool_ca"}},
	})
}

func TestDeepSeekParser(t *testing.T) {
	const (
		begin = "<｜tool▁calls▁begin｜>"
		call1 = "<｜tool▁call▁begin｜>"
		sep   = "<｜tool▁sep｜>"
		end1  = "<｜tool▁call▁end｜>"
		end   = "<｜tool▁calls▁end｜>"
	)
	runFormatCases(t, FormatDeepSeek, []formatCase{
		{name: "plain content", text: "Hello, 世界 <｜x", want: Result{Content: "Hello, 世界 <｜x"}},
		{name: "thinking prompt", reasoning: true, text: "Let me think.\n</think>\n\nAnswer.", want: Result{Reasoning: "Let me think.", Content: "Answer."}},
		{name: "V3.1 calls",
			text: "Checking both." + begin + call1 + "get_weather" + sep + `{"city": "Paris", "days": 2}` + end1 + call1 + "bash" + sep + `{"command": "ls <dir>"}` + end1 + end + " Done?",
			want: Result{Content: "Checking both.Done?", ToolCalls: []ToolCall{
				call("call_1", "get_weather", `{"city":"Paris","days":2}`), call("call_2", "bash", `{"command":"ls <dir>"}`)}}},
		{name: "V3 fenced calls",
			text: begin + call1 + "function" + sep + "get_weather\n```json\n{\"city\": \"Oslo\"}\n```" + end1 + "\n" + call1 + "function" + sep + "bash\n```json\n{}\n```" + end1 + end,
			want: Result{ToolCalls: []ToolCall{call("call_1", "get_weather", `{"city":"Oslo"}`), call("call_2", "bash", `{}`)}}},
		{name: "arguments not JSON", problem: "arguments are not JSON",
			text: begin + call1 + "bash" + sep + `{command: ls}` + end1 + end,
			want: Result{Content: begin + call1 + "bash" + sep + `{command: ls}` + end1 + end, Unparsed: true}},
		{name: "arguments an array", problem: "not a JSON object",
			text: begin + call1 + "bash" + sep + `["ls"]` + end1 + end,
			want: Result{Content: begin + call1 + "bash" + sep + `["ls"]` + end1 + end, Unparsed: true}},
		{name: "no separator", problem: "no <｜tool▁sep｜>",
			text: begin + call1 + `bash {"a":1}` + end1 + end,
			want: Result{Content: begin + call1 + `bash {"a":1}` + end1 + end, Unparsed: true}},
		{name: "text after a call without the section end",
			text: begin + call1 + "bash" + sep + `{"command":"ls"}` + end1 + " oops",
			want: Result{Content: "oops", ToolCalls: []ToolCall{call("call_1", "bash", `{"command":"ls"}`)}}},
		{name: "garbage before the first call", problem: "expected <｜tool▁call▁begin｜>",
			text: begin + "oops" + call1 + "bash" + sep + `{}` + end1 + end,
			want: Result{Content: begin + "oops" + call1 + "bash" + sep + `{}` + end1 + end, Unparsed: true}},
		{name: "cut off in the arguments", problem: "ended before",
			text: "Ok." + begin + call1 + "bash" + sep + `{"command": "l`,
			want: Result{Content: "Ok." + begin + call1 + "bash" + sep + `{"command": "l`, Unparsed: true}},
		{name: "complete call cut off before its end tags",
			text: begin + call1 + "bash" + sep + `{"command":"pwd"}`,
			want: Result{ToolCalls: []ToolCall{call("call_1", "bash", `{"command":"pwd"}`)}}},
		{name: "section cut off after a call",
			text: begin + call1 + "bash" + sep + `{"command":"pwd"}` + end1 + "\n",
			want: Result{ToolCalls: []ToolCall{call("call_1", "bash", `{"command":"pwd"}`)}}},
		{name: "section cut off before any call", problem: "ended inside a section",
			text: "x" + begin + "\n",
			want: Result{Content: "x" + begin + "\n", Unparsed: true}},
	})
}

func TestKimiK2Parser(t *testing.T) {
	const (
		begin = "<|tool_calls_section_begin|>"
		call1 = "<|tool_call_begin|>"
		args  = "<|tool_call_argument_begin|>"
		end1  = "<|tool_call_end|>"
		end   = "<|tool_calls_section_end|>"
	)
	runFormatCases(t, FormatKimiK2, []formatCase{
		{name: "plain content", text: "I am Kimi. <think> is text here", want: Result{Content: "I am Kimi. <think> is text here"}},
		{name: "think is not Kimi-K2 markup", text: "<think>x</think>", want: Result{Content: "<think>x</think>"}},
		{name: "calls keep the model's IDs",
			text: "Let me check." + begin + "\n" + call1 + "functions.get_weather:0" + args + `{"city": "Paris"}` + end1 + "\n" + call1 + " functions.bash:1 " + args + "\n{\"command\": \"ls\"}\n" + end1 + "\n" + end,
			want: Result{Content: "Let me check.", ToolCalls: []ToolCall{
				call("functions.get_weather:0", "get_weather", `{"city":"Paris"}`), call("functions.bash:1", "bash", `{"command":"ls"}`)}}},
		{name: "ID without index", problem: "is not functions.NAME:INDEX",
			text: begin + call1 + "functions.bash" + args + `{}` + end1 + end,
			want: Result{Content: begin + call1 + "functions.bash" + args + `{}` + end1 + end, Unparsed: true}},
		{name: "no argument tag", problem: "no <|tool_call_argument_begin|>",
			text: begin + call1 + `functions.bash:0 {}` + end1 + end,
			want: Result{Content: begin + call1 + `functions.bash:0 {}` + end1 + end, Unparsed: true}},
		{name: "bad arguments", problem: "not a JSON object",
			text: begin + call1 + "functions.bash:0" + args + `"ls"` + end1 + end,
			want: Result{Content: begin + call1 + "functions.bash:0" + args + `"ls"` + end1 + end, Unparsed: true}},
		{name: "missing call end before the next call",
			text: begin + call1 + "functions.a:0" + args + `{}` + call1 + "functions.b:1" + args + `{"x":1}` + end1 + end,
			want: Result{ToolCalls: []ToolCall{call("functions.a:0", "a", `{}`), call("functions.b:1", "b", `{"x":1}`)}}},
	})
}
