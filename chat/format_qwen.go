package chat

import "strings"

// FormatQwen is Qwen3.5's and Qwen3's markup: <|im_start|>role … <|im_end|>
// turns, <think> reasoning, and <tool_call> holding either Qwen3.5's XML
// (<function=NAME><parameter=P>…) or Qwen3's JSON ({"name", "arguments"}).
// The parser is parser.go and toolcall.go.
var FormatQwen = &Format{
	Name:       "qwen",
	markers:    []string{"<|im_start|>"},
	StopTokens: []string{"<|im_end|>", "<|endoftext|>"},
	Calls: &CallSyntax{
		Lead: "\n\n", Open: "<tool_call>\n<function=", Again: "\n<tool_call>\n<function=", NameEnd: ">\n",
		Param: true, ParamOpen: "<parameter=", ParamMid: ">\n", ValueEnd: "</parameter>", AfterValue: "\n",
		CallEnd: "</function>\n</tool_call>",
		Tags:    []string{"<parameter=", "</function>", "</tool_call>", "<tool_call>", "<function=", "</think>"},
	},
	newParser:  newQwenParser,
	callsOpen:  "<tool_call>",
	callsClose: []string{"</tool_call>"},
	writeCalls: writeQwenCalls,
}

// writeQwenCalls writes Qwen3.5's XML calls as its template does.
func writeQwenCalls(calls []ToolCall) string {
	return writeParamCalls(calls, func(name string) string { return "<tool_call>\n<function=" + name + ">\n" },
		func(key, value string) string { return "<parameter=" + key + ">\n" + value + "\n</parameter>\n" },
		"</function>\n</tool_call>")
}

// writeParamCalls writes calls whose arguments are one tagged block per
// parameter (Qwen3.5's and GLM-4.5's markups), one call per line, the
// parameters in orderedArgs' order.
func writeParamCalls(calls []ToolCall, open func(name string) string, param func(key, value string) string, end string) string {
	var b strings.Builder
	for i, c := range calls {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(open(c.Function.Name))
		keys, values := orderedArgs(c.Function.Arguments)
		for k, key := range keys {
			b.WriteString(param(key, values[k]))
		}
		b.WriteString(end)
	}
	return b.String()
}
