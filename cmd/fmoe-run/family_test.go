package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/chat"
	"github.com/fmoe/fmoe/convo/convotest"
	"github.com/fmoe/fmoe/runtime/model"
	"github.com/fmoe/fmoe/tokenizer"
)

// TestGenerateFamilyPacks runs generate on a pack of each family's tiny checkpoint with its
// published chat template, and prints a tool call written in the family's markup as the chat
// shows it: the CLI reads the format from the pack.
func TestGenerateFamilyPacks(t *testing.T) {
	replies := map[string]struct {
		format *chat.Format
		reply  string
	}{
		"glm45":    {chat.FormatGLM45, "\n<think>need weather</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>"},
		"deepseek": {chat.FormatDeepSeek, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>"},
		"kimi_k2":  {chat.FormatKimiK2, "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_calls_section_end|>"},
	}
	for name, f := range convotest.Families {
		t.Run(name, func(t *testing.T) {
			want := replies[name]
			dir := convotest.PackFamily(t, "../..", f)
			format := chatFormat(dir)
			if format != want.format {
				t.Fatalf("format %q, want %q", format.Name, want.format.Name)
			}
			if _, err := runApp(t, "", "generate", "--model", dir, "--prompt", "Hello", "--tokens", "3", "--backend", "cpu"); err != nil {
				t.Fatalf("generate on the %s pack: %v", name, err)
			}

			tok, err := tokenizer.Load(dir + "/tokenizer.json")
			if err != nil {
				t.Fatal(err)
			}
			m, err := model.Open(dir, model.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			stop := stopTokens(m, tok, format)
			if id, _ := tok.TokenID(format.StopTokens[0]); !containsID(stop, id) {
				t.Errorf("stop ids %v lack %s", stop, format.StopTokens[0])
			}
			var out bytes.Buffer
			w := newReplyWriter(&out, tok, stop, true, nil, format, "", false)
			for _, id := range tok.Encode(want.reply) {
				w.token(id)
			}
			w.close()
			if got := out.String(); !strings.Contains(got, `tool call: get_weather({"city":"Paris"})`) || strings.Contains(got, "<") {
				t.Errorf("reply printed as %q", got)
			}
		})
	}
}
