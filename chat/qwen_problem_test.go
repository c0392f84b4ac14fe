package chat

import (
	"strings"
	"testing"
)

// TestQwenProblems: every way a Qwen tool call fails to parse returns its
// markup as Unparsed content with a Problem naming the format and what was
// wrong, fed whole or a byte at a time, so fmoe-run can warn of it.
func TestQwenProblems(t *testing.T) {
	for _, tc := range []struct{ text, problem string }{
		{"<tool_call>\nhello", "expected <function=NAME> or a JSON object after <tool_call>"},
		{"<tool_call>\n", "the output ended before </tool_call>"},
		{"<tool_call>\n<function=ba\nsh>", "a function or parameter name holds a newline"},
		{"<tool_call>\n<function=bas", "the output ended in a function or parameter name"},
		{"<tool_call>\n<function= >", "an empty function or parameter name"},
		{"<tool_call>\n<function=bash>\nstray", "expected <parameter=NAME> or </function>"},
		{"<tool_call>\n<function=bash>\n", "the output ended before </tool_call>"},
		{"<tool_call>\n<function=bash>\n<parameter=command>\nl", "the output ended before </parameter>"},
		{"<tool_call>\n{\"name\": \"bash\"", "the output ended before </tool_call>"},
		{"<tool_call>\n{\"nom\": 1}\n</tool_call>", `the call is not JSON of the form {"name"`},
	} {
		for _, step := range []int{len(tc.text), 1} {
			p := NewParser(ParserOptions{Format: FormatQwen})
			var evs []Event
			for i := 0; i < len(tc.text); i += step {
				evs = append(evs, p.Feed(tc.text[i:min(i+step, len(tc.text))])...)
			}
			evs = append(evs, p.Close()...)
			var problems []string
			for _, e := range evs {
				if e.Unparsed {
					problems = append(problems, e.Problem)
				}
			}
			if len(problems) != 1 || !strings.HasPrefix(problems[0], "qwen tool call: ") || !strings.Contains(problems[0], tc.problem) {
				t.Errorf("%q (step %d): problems %q, want one saying %q", tc.text, step, problems, tc.problem)
			}
		}
	}
}
