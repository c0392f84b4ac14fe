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

// TestPrinterWarns: a tool call cut off in each family's markup is printed
// as text and, with Warn set, reported there with the format and what was
// wrong; a well-formed call and plain text warn of nothing.
func TestPrinterWarns(t *testing.T) {
	for _, tc := range []struct {
		format *chat.Format
		bad    string
		want   string // in the warning
	}{
		{chat.FormatQwen, "Ok.\n<tool_call>\n<function=bash>\n<parameter=command>\nls", "tool call"},
		{chat.FormatGLM45, "Ok.<tool_call>bash\n<arg_key>command</arg_key>\n<arg_value>ls", "glm"},
		{chat.FormatDeepSeek, "Ok.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>bash\n```json\n{\"command\": \"l", "deepseek"},
		{chat.FormatKimiK2, "Ok.<|tool_calls_section_begin|><|tool_call_begin|>functions.bash:0<|tool_call_argument_begin|>{\"command\": \"l", "kimi"},
	} {
		var out, warn strings.Builder
		p := Printer{Out: &out, Warn: &warn, ShowCalls: true}
		ps := chat.NewParser(chat.ParserOptions{Tools: []chat.Tool{BashTool}, Format: tc.format})
		p.Print(ps.Feed(tc.bad))
		p.Print(ps.Close())
		p.End()
		w := strings.ToLower(warn.String())
		if !strings.HasPrefix(w, "warning: ") || !strings.Contains(w, tc.want) || !strings.Contains(w, "it is shown as text") || strings.Count(w, "\n") != 1 {
			t.Errorf("%s: warned %q, want one line saying %q", tc.format.Name, warn.String(), tc.want)
		}
		if !strings.Contains(out.String(), "Ok.") || strings.Contains(out.String(), "tool call:") {
			t.Errorf("%s: printed %q, want the text and no call", tc.format.Name, out.String())
		}
	}
	var out, warn strings.Builder
	p := Printer{Out: &out, Warn: &warn, ShowCalls: true}
	ps := chat.NewParser(chat.ParserOptions{Tools: []chat.Tool{BashTool}, Format: chat.FormatQwen})
	p.Print(ps.Feed("Sure.\n<tool_call>\n<function=bash>\n<parameter=command>\nls\n</parameter>\n</function>\n</tool_call>"))
	p.Print(ps.Close())
	if warn.Len() != 0 || !strings.Contains(out.String(), "tool call: bash") {
		t.Errorf("a well-formed call: warned %q, printed %q", warn.String(), out.String())
	}
}
