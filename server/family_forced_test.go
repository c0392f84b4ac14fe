package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go"

	"github.com/fmoe/fmoe/chat"
	"github.com/fmoe/fmoe/convo"
	"github.com/fmoe/fmoe/convo/convotest"
	"github.com/fmoe/fmoe/runtime/model"
)

// familyTools are the server tests' tools and one with typed and untyped
// JSON parameters.
func familyTools(t *testing.T) []chat.Tool {
	calc := chat.Tool{Type: "function", Function: chat.ToolFunction{Name: "calc",
		Parameters: json.RawMessage(`{"type": "object", "properties": {"x": {"type": "number"}, "n": {"type": "integer"}, "any": {}}, "required": ["x"]}`)}}
	return append(grammarTools(t), calc)
}

// TestCallGrammarFormats checks which texts each family's call grammar
// accepts as (the start of) a forced reply.
func TestCallGrammarFormats(t *testing.T) {
	req := toolChoice{mode: "required"}
	bash := toolChoice{mode: "function", name: "bash"}
	for _, c := range []struct {
		f       *chat.Format
		choice  toolChoice
		multi   bool
		text    string
		ok, end bool
	}{
		{chat.FormatGLM45, req, true, "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>", true, true},
		{chat.FormatGLM45, req, true, "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>\n<tool_call>bash\n<arg_key>command</arg_key>\n<arg_value>ls</arg_value>\n</tool_call>", true, true},
		{chat.FormatGLM45, req, true, "<tool_call>get_weather\n</tool_call>", false, false}, // city is required
		{chat.FormatGLM45, req, true, "<tool_call>get_weather\n<arg_key>town</arg_key>", false, false},
		{chat.FormatGLM45, req, true, "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Pa</arg_key>", false, false},
		{chat.FormatGLM45, req, true, "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value></tool_call>", false, false},
		{chat.FormatGLM45, req, false, "<tool_call>bash\n<arg_key>command</arg_key>\n<arg_value>ls</arg_value>\n</tool_call>\n", false, false},
		{chat.FormatGLM45, bash, true, "<tool_call>get_weather", false, false},

		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>", true, true},
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}<｜tool▁call▁end｜>", true, false}, // the section must close
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\", \"unit\": \"c\"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>calc<｜tool▁sep｜>{\"any\": {\"a\": [1, -0.5e+3, true, null, \"\\u00e9\\n\"], \"b\": {}}, \"x\": 0}<｜tool▁call▁end｜><｜tool▁call▁begin｜>bash<｜tool▁sep｜>{\"command\": \"ls\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>", true, true},
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{}", false, false},
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\", \"city\": ", false, false},
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>calc<｜tool▁sep｜>{\"x\": 01", false, false},
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"a\nb\"", false, false},
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"\\x\"", false, false},
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"a<｜tool▁call▁end｜>", false, false},
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>calc<｜tool▁sep｜>{\"any\": [1,]", false, false},
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": 12}", false, false}, // city is a string
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>calc<｜tool▁sep｜>{\"n\": 12, \"x\": -0.5E+7}<｜tool▁call▁end｜>", true, false},
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>calc<｜tool▁sep｜>{\"n\": 1.5", false, false},   // an integer
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>calc<｜tool▁sep｜>{\"x\": \"1\"", false, false}, // a number
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>calc<｜tool▁sep｜>{\"any\": \"1\", \"x\": 1}", true, false},
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>calc<｜tool▁sep｜>{\"x\": 1234567890123456.1234567890123456e-99}", true, false},
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>calc<｜tool▁sep｜>{\"x\": 12345678901234567", false, false}, // not a float64's
		{chat.FormatDeepSeek, req, true, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>calc<｜tool▁sep｜>{\"x\": 1e100", false, false},
		{chat.FormatDeepSeek, req, false, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>bash<｜tool▁sep｜>{\"command\": \"ls\"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>", false, false},

		{chat.FormatKimiK2, req, true, "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:3<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_call_begin|>functions.bash:4<|tool_call_argument_begin|>{\"command\": \"ls\"}<|tool_call_end|><|tool_calls_section_end|>", true, true},
		{chat.FormatKimiK2, req, true, "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0", false, false}, // the conversation had 3 calls
		{chat.FormatKimiK2, req, true, "<|tool_calls_section_begin|><|tool_call_begin|>functions.bash:3<|tool_call_argument_begin|>{\"command\": \"ls\"}<|tool_call_end|> ", false, false},
	} {
		g := newCallGrammar(c.f.Calls, nil, nil, nil, familyTools(t), c.choice, c.multi, false, 3)
		st := g.state(c.text)
		if ok := st.ph != phBad; ok != c.ok || ok && (st.ph == phEnd) != c.end {
			t.Errorf("%s %+v multi %v: %q: ok %v, at end %v; want %v, %v", c.f.Name, c.choice, c.multi, c.text, ok, st.ph == phEnd, c.ok, c.end)
		}
		if st.ph == phEnd {
			checkGrammarReply(t, c.f, c.text, c.choice, 3)
		}
	}
}

// TestCallGrammarTagTokens: a tag that is a token is not split across
// tokens in a structural piece (its multi-byte characters may be no
// token's text, which would leave the reply with no way on).
func TestCallGrammarTagTokens(t *testing.T) {
	texts := []string{"<", "<｜", "<｜tool▁call▁end｜>", "}", "}<｜tool▁call▁end｜>", "x", "<｜tool▁calls▁end｜>"}
	g := newCallGrammar(chat.FormatDeepSeek.Calls, texts, make([]bool, len(texts)), nil, familyTools(t), toolChoice{mode: "function", name: "bash"}, true, false, 0)
	logits := make([]float32, len(texts))
	open := g.inject("")
	g.mask(open+`{"command": "ls"`, logits)
	var kept []string
	for id, l := range logits {
		if l == 0 {
			kept = append(kept, texts[id])
		}
	}
	if want := []string{"}", "}<｜tool▁call▁end｜>"}; !slices.Equal(kept, want) {
		t.Errorf("after the value the mask keeps %q, want %q", kept, want)
	}
	clear(logits)
	g.mask(open+`{"command": "ls"}`, logits)
	kept = kept[:0]
	for id, l := range logits {
		if l == 0 {
			kept = append(kept, texts[id])
		}
	}
	if want := []string{"<｜tool▁call▁end｜>"}; !slices.Equal(kept, want) {
		t.Errorf("before the call's end the mask keeps %q, want %q", kept, want)
	}
}

// TestForcedCallFamilyTokens walks each family pack's vocabulary through
// its call grammar, the way generation does (the injected opening, then
// only unmasked tokens, chosen at random, with a bias to the tokens that
// move the markup on): every walk that reaches end-of-turn parses, with
// the family's parser, into valid calls to offered functions with their
// required arguments, and the mask never leaves a walk without a token.
func TestForcedCallFamilyTokens(t *testing.T) {
	for name, f := range convotest.Families {
		t.Run(name, func(t *testing.T) {
			e, err := convo.Open(convotest.PackFamily(t, "..", f), model.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			s := New(e, Options{})
			texts := s.tokenTexts()
			format := e.Template.Format()
			done := 0
			for walk := range 30 {
				choice := []toolChoice{{mode: "required"}, {mode: "function", name: "get_weather"}, {mode: "function", name: "bash"}}[walk%3]
				g := newCallGrammar(format.Calls, texts, s.special, e.StopIDs(), familyTools(t), choice, walk%2 == 0, false, walk%4)
				rng := rand.New(rand.NewPCG(uint64(walk), 7))
				gen, ended := "", false
				logits := make([]float32, len(texts))
				for range 300 {
					gen += g.inject(gen)
					clear(logits)
					g.mask(gen, logits)
					var all, moving []int
					closer := grammarCloser(g, g.state(gen))
					for id, l := range logits {
						if l == 0 {
							all = append(all, id)
							if closer != "" && (strings.HasPrefix(closer, texts[id]) || strings.HasPrefix(texts[id], closer)) ||
								slices.Contains(e.StopIDs(), id) {
								moving = append(moving, id)
							}
						}
					}
					if len(all) == 0 {
						t.Fatalf("walk %d: after %q every token is masked", walk, gen)
					}
					pick := all
					if len(moving) > 0 && rng.IntN(4) > 0 {
						pick = moving
					}
					id := pick[rng.IntN(len(pick))]
					if slices.Contains(e.StopIDs(), id) {
						ended = true
						break
					}
					gen += texts[id]
				}
				if ended {
					done++
					checkGrammarReply(t, format, gen, choice, walk%4)
				}
			}
			if done < 20 {
				t.Errorf("%d of 30 walks reached end-of-turn", done)
			}
			t.Logf("%d of 30 walks ended in valid calls", done)
		})
	}
}

// grammarCloser is text that brings a walk in st nearer the end of its
// call: the rest of a value's end tag, the end of a JSON value, or of
// the current structural piece.
func grammarCloser(g *callGrammar, st gstate) string {
	j := st.json
	switch st.ph {
	case phLit:
		for _, alt := range slices.Backward(g.expect(&st)) { // the call's end comes last
			if strings.HasPrefix(alt, st.lit) {
				return alt[len(st.lit):]
			}
		}
	case phValue:
		end := g.sx.ValueEnd
		for n := len(end) - 1; n > 0; n-- {
			if strings.HasSuffix(st.tail, end[:n]) {
				return end[n:]
			}
		}
		return end
	case phJSON:
		switch j.st {
		case jsString:
			return "\""
		case jsValue:
			if v, ok := map[string]string{"string": `""`, "boolean": "true", "null": "null", "array": "[]", "object": "{}"}[j.want]; ok && j.depth == 0 {
				return v
			}
			return "0"
		case jsArray:
			return "]"
		case jsObject:
			return "}"
		case jsKey:
			return "\"k\""
		case jsColon:
			return ":"
		case jsWord:
			return j.word
		case jsMinus, jsDot, jsE, jsESign:
			return "1"
		}
		if j.depth > 0 && j.stack&(1<<(j.depth-1)) != 0 {
			return "]"
		}
		return "}"
	}
	return ""
}

// checkGrammarReply parses a reply the grammar ended and wants only calls:
// to offered (the named) functions, with JSON-object arguments holding the
// required parameters and no others, of their schema's types where the
// format writes JSON (markup values are text the parser types), and
// Kimi-K2's IDs numbered on from the conversation's first calls.
func checkGrammarReply(t *testing.T, f *chat.Format, reply string, choice toolChoice, first int) {
	t.Helper()
	p := chat.NewParser(chat.ParserOptions{Format: f, Tools: familyTools(t)})
	res := chat.Collect(append(p.Feed(reply), p.Close()...))
	if res.Content != "" || len(res.ToolCalls) == 0 {
		t.Fatalf("%s: %q parses as content %q, %d calls", f.Name, reply, res.Content, len(res.ToolCalls))
	}
	required := map[string][]string{"get_weather": {"city"}, "bash": {"command"}, "calc": {"x"}}
	allowed := map[string][]string{"get_weather": {"city", "unit"}, "bash": {"command"}, "calc": {"x", "n", "any"}}
	types := map[string]string{"city": "string", "unit": "string", "command": "string", "x": "float64", "n": "float64", "any": ""}
	for i, c := range res.ToolCalls {
		var args map[string]any
		if err := json.Unmarshal([]byte(c.Function.Arguments), &args); err != nil || choice.mode == "function" && c.Function.Name != choice.name {
			t.Errorf("%s: %q: call %s(%s) %v", f.Name, reply, c.Function.Name, c.Function.Arguments, err)
			continue
		}
		for _, k := range required[c.Function.Name] {
			if _, ok := args[k]; !ok {
				t.Errorf("%s: %q: call %s lacks %s", f.Name, reply, c.Function.Name, k)
			}
		}
		for k, v := range args {
			if !slices.Contains(allowed[c.Function.Name], k) || !f.Calls.Param && types[k] != "" && fmt.Sprintf("%T", v) != types[k] {
				t.Errorf("%s: %q: call %s has %s = %#v", f.Name, reply, c.Function.Name, k, v)
			}
		}
		if id := fmt.Sprintf("functions.%s:%d", c.Function.Name, first+i); f == chat.FormatKimiK2 && c.ID != id {
			t.Errorf("%s: call ID %q, want %q", f.Name, c.ID, id)
		}
	}
}

// TestForcedToolCallFamilies is TestForcedToolCallSampled through the
// server on each family's pack, whose random weights write nothing
// sensible: every sampled reply to a forced tool_choice holds only valid
// calls (a reply cut off by max_tokens inside a markup value, which such a
// model seldom ends, holds the calls completed before it), never text,
// and the JSON formats complete calls.
func TestForcedToolCallFamilies(t *testing.T) {
	for name, f := range convotest.Families {
		t.Run(name, func(t *testing.T) {
			e, err := convo.Open(convotest.PackFamily(t, "..", f), model.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			_, c, _ := start(t, New(e, Options{Name: "fmoe-tiny-chat"}))
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			calls := 0
			for seed := range 6 {
				choice := []string{"required", "get_weather", "bash"}[seed%3]
				p := params("What's the weather in Paris?", true)
				p.Temperature, p.Seed, p.MaxTokens = openai.Float(1), openai.Int(int64(seed)), openai.Int(200)
				if choice == "required" {
					p.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}
				} else {
					p.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfChatCompletionNamedToolChoice: &openai.ChatCompletionNamedToolChoiceParam{
						Function: openai.ChatCompletionNamedToolChoiceFunctionParam{Name: choice}}}
				}
				msg, finish := complete(t, ctx, c, p, seed%2 == 1)
				label := fmt.Sprintf("%s/seed %d/%s", name, seed, choice)
				if msg.Content != "" || finish != "length" && (finish != "tool_calls" || len(msg.ToolCalls) == 0) {
					t.Errorf("%s: content %q, %d calls, finish %s", label, msg.Content, len(msg.ToolCalls), finish)
				}
				for i, call := range msg.ToolCalls {
					var args map[string]any
					err := json.Unmarshal([]byte(call.Function.Arguments), &args)
					_, isString := map[string]any{"get_weather": args["city"], "bash": args["command"]}[call.Function.Name].(string)
					if err != nil || choice != "required" && call.Function.Name != choice || !isString ||
						name == "kimi_k2" && call.ID != fmt.Sprintf("functions.%s:%d", call.Function.Name, i) {
						t.Errorf("%s: call %s %s(%s)", label, call.ID, call.Function.Name, call.Function.Arguments)
					}
				}
				calls += len(msg.ToolCalls)
			}
			t.Logf("%d calls in 6 replies", calls)
			if calls == 0 && !e.Template.Format().Calls.Param {
				t.Error("no reply held a call")
			}
		})
	}
}
