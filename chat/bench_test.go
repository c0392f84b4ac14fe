package chat

import (
	"strings"
	"testing"
)

// Long outputs fed token by token must stay linear: a parser that rescans
// or recopies its buffer per chunk would make generation quadratic.
func BenchmarkParserStream(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(strings.Repeat("thinking about <b> and a < c\n", 2000))
	sb.WriteString("</think>\n\n")
	sb.WriteString(strings.Repeat("Answer text with 漢字 and < signs.\n", 2000))
	sb.WriteString("<tool_call>\n<function=bash>\n<parameter=command>\n")
	sb.WriteString(strings.Repeat("echo 'x < y' >> file\n", 5000))
	sb.WriteString("</parameter>\n</function>\n</tool_call>")
	text := sb.String()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		p := NewParser(ParserOptions{StartInReasoning: true})
		for i := 0; i < len(text); i += 3 {
			p.Feed(text[i:min(i+3, len(text))])
		}
		p.Close()
	}
}
