package server

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/chat"
	"github.com/fmoe/fmoe/convo"
	"github.com/fmoe/fmoe/convo/convotest"
	"github.com/fmoe/fmoe/runtime/model"
)

// noneReplies are a call to get_weather(city: Paris) as each family's model
// writes it, and the markup its template writes for that call.
var noneReplies = map[string]struct{ reply, markup string }{
	"qwen": {"Checking.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
		"<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"},
	"glm45": {familyReplies["glm45"].reply, "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>"},
	// DeepSeek-V3.1's template writes the arguments as the client sent them: compact here.
	"deepseek": {familyReplies["deepseek"].reply, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\":\"Paris\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>"},
	// Kimi-K2's first template renders no calls: the format's own markup, under the model's ID.
	"kimi_k2": {familyReplies["kimi_k2"].reply, "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\":\"Paris\"}<|tool_call_end|><|tool_calls_section_end|>"},
}

// TestToolChoiceNoneMarkup: with tool_choice "none" a call the model writes
// anyway stays text in the model's own markup, as its chat template writes
// calls (chat.TestCallMarkup compares that with Jinja2), not Qwen3.5's.
func TestToolChoiceNoneMarkup(t *testing.T) {
	check := func(t *testing.T, e *convo.Engine, name string) {
		want := noneReplies[name]
		s := New(e, Options{Name: "m"})
		j, status, err := s.prepare([]byte(`{"messages": [{"role": "user", "content": "Weather in Paris?"}], "tool_choice": "none",
			"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]}`))
		if err != nil {
			t.Fatalf("%d %v", status, err)
		}
		rec := httptest.NewRecorder()
		o := &responder{w: rec, id: "chatcmpl-x", name: "m", parser: chat.NewParser(j.popts), none: true, tpl: e.Template}
		reply := want.reply
		if name == "qwen" && j.popts.StartInReasoning {
			reply = "need weather\n</think>\n\n" + reply
		}
		for _, piece := range strings.SplitAfter(reply, ">") {
			o.feed(piece)
		}
		o.finish(false, &usage{}, false)
		var c completion
		if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		m := c.Choices[0].Message
		if len(m.ToolCalls) != 0 || m.Content != "Checking."+want.markup || *c.Choices[0].FinishReason != "stop" {
			t.Fatalf("content %q, %d calls, finish %s; want content %q", m.Content, len(m.ToolCalls), *c.Choices[0].FinishReason, "Checking."+want.markup)
		}
	}
	t.Run("qwen", func(t *testing.T) { check(t, engine, "qwen") })
	for name, f := range convotest.Families {
		t.Run(name, func(t *testing.T) {
			e, err := convo.Open(convotest.PackFamily(t, "..", f), model.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			check(t, e, name)
		})
	}
}
