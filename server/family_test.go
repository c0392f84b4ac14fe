package server

import (
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go"

	"github.com/fmoe/fmoe/chat"
	"github.com/fmoe/fmoe/convo"
	"github.com/fmoe/fmoe/convo/convotest"
	"github.com/fmoe/fmoe/runtime/model"
)

// familyReplies are a tool call in each family's markup.
var familyReplies = map[string]struct {
	format *chat.Format
	reply  string
	id     string // the call ID the format keeps, or "" for a made one
}{
	"glm45":    {chat.FormatGLM45, "\n<think>need weather</think>\nChecking.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>", ""},
	"deepseek": {chat.FormatDeepSeek, "Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>", ""},
	"kimi_k2":  {chat.FormatKimiK2, "Checking.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_calls_section_end|>", "functions.get_weather:0"},
}

// TestFamilyPacks serves a pack of each family's tiny checkpoint with its published chat
// template: the server reads the family's format from the pack, stops at its end-of-turn
// tokens, parses its tool-call markup into OpenAI tool_calls, accepts a forced call, and answers a real request through the model.
func TestFamilyPacks(t *testing.T) {
	for name, f := range convotest.Families {
		t.Run(name, func(t *testing.T) {
			want := familyReplies[name]
			e, err := convo.Open(convotest.PackFamily(t, "..", f), model.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if got := e.Template.Format(); got != want.format {
				t.Fatalf("format %q, want %q", got.Name, want.format.Name)
			}
			for _, stop := range want.format.StopTokens {
				if id, ok := e.Tok.TokenID(stop); ok && !slices.Contains(e.StopIDs(), id) {
					t.Errorf("stop ids %v lack %s (%d)", e.StopIDs(), stop, id)
				}
			}
			s := New(e, Options{Name: "fmoe-tiny-chat"})
			req := `{"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]`
			j, status, err := s.prepare([]byte(req + `}`))
			if err != nil {
				t.Fatalf("%d %v", status, err)
			}
			if j.popts.Format != want.format {
				t.Fatalf("the request's parser is %q", j.popts.Format.Name)
			}
			// The reply as the model would write it, through the request's parser.
			rec := httptest.NewRecorder()
			o := &responder{w: rec, id: "chatcmpl-x", name: "m", parser: chat.NewParser(j.popts)}
			o.start()
			for _, piece := range strings.SplitAfter(want.reply, ">") {
				o.feed(piece)
			}
			o.finish(false, &usage{}, false)
			var c completion
			if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil {
				t.Fatal(err)
			}
			m := c.Choices[0].Message
			if len(m.ToolCalls) != 1 || m.ToolCalls[0].Function.Name != "get_weather" || m.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` ||
				m.Content != "Checking." || *c.Choices[0].FinishReason != "tool_calls" || want.id != "" && m.ToolCalls[0].ID != want.id {
				t.Fatalf("message %+v, finish %s", m, *c.Choices[0].FinishReason)
			}

			if _, status, err := s.prepare([]byte(req + `, "tool_choice": "required"}`)); err != nil {
				t.Errorf("forced call: %d %v", status, err) // TestForcedToolCallFamilies
			}
			_, client, _ := start(t, s)
			p := params("Hello", false)
			p.MaxTokens = openai.Int(3)
			if _, err := client.Chat.Completions.New(t.Context(), p); err != nil {
				t.Fatalf("a request to the %s pack: %v", name, err)
			}
		})
	}
}
