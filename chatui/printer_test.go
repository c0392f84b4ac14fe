package chatui

import (
	"strings"
	"testing"

	"github.com/fmoe/fmoe/chat"
)

// TestPrinter feeds a Qwen3.5-style reply in small pieces: the whitespace
// around the tags never reaches the reader, nor does any markup.
func TestPrinter(t *testing.T) {
	reply := "Paris is a city.\n</think>\n\nLet me check.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"
	for _, tc := range []struct {
		p    Printer
		want string
	}{
		{Printer{HideReasoning: true, ShowCalls: true}, "Let me check.\ntool call: get_weather({\"city\":\"Paris\"})\n"},
		{Printer{ShowCalls: true}, "thinking: Paris is a city.\nLet me check.\ntool call: get_weather({\"city\":\"Paris\"})\n"},
		{Printer{Color: true}, dim + "thinking: Paris is a city." + reset + "\nLet me check.\n"},
	} {
		var b strings.Builder
		tc.p.Out = &b
		ps := chat.NewParser(chat.ParserOptions{Tools: []chat.Tool{weather}, StartInReasoning: true})
		for i := 0; i < len(reply); i += 3 {
			tc.p.Print(ps.Feed(reply[i:min(i+3, len(reply))]))
		}
		tc.p.Print(ps.Close())
		tc.p.End()
		if b.String() != tc.want {
			t.Errorf("%+v printed %q, want %q", tc.p, b.String(), tc.want)
		}
	}
}
