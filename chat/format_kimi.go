package chat

import (
	"fmt"
	"strings"
)

// FormatKimiK2 is Kimi-K2's markup (moonshotai): <|im_user|>/<|im_assistant|>
// /<|im_system|> ROLE<|im_middle|> … <|im_end|> turns and sections of calls:
//
//	<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>{JSON}<|tool_call_end|>…<|tool_calls_section_end|>
//
// The call's ID is the model's own functions.NAME:IDX, which Kimi's later
// templates write back with the tool's result.
var FormatKimiK2 = &Format{
	Name:       "kimi_k2",
	markers:    []string{"<|im_middle|>", "<|tool_calls_section_begin|>"},
	StopTokens: []string{"<|im_end|>"},
	newParser:  kimiMarkup.parser,
	Calls: &CallSyntax{
		Open: "<|tool_calls_section_begin|><|tool_call_begin|>functions.", Again: "<|tool_call_begin|>functions.",
		Index: true, NameEnd: kimiArgs, CallEnd: "<|tool_call_end|>", Close: "<|tool_calls_section_end|>",
		Tags: []string{"<|tool_calls_section_begin|>", "<|tool_call_begin|>", kimiArgs, "<|tool_call_end|>", "<|tool_calls_section_end|>"},
	},
	callsOpen:  "<|tool_calls_section_begin|>",
	callsClose: []string{"<|tool_calls_section_end|>"},
	writeCalls: writeKimiCalls,
}

// writeKimiCalls writes calls as Kimi-K2's later templates do, each under
// its ID: the model's own functions.NAME:IDX, or one made from its place.
func writeKimiCalls(calls []ToolCall) string {
	var b strings.Builder
	b.WriteString(kimiMarkup.open)
	for i, c := range calls {
		id := c.ID
		if p, err := parseKimiCall(id+kimiArgs, nil); err != nil || p.name != c.Function.Name {
			id = fmt.Sprintf("functions.%s:%d", c.Function.Name, i)
		}
		b.WriteString(kimiMarkup.callBegin + id + kimiArgs + compactArgs(c.Function.Arguments) + kimiMarkup.callEnd)
	}
	return b.String() + kimiMarkup.close
}

var kimiMarkup = &markup{
	name:      "kimi_k2",
	open:      "<|tool_calls_section_begin|>",
	callBegin: "<|tool_call_begin|>",
	callEnd:   "<|tool_call_end|>",
	close:     "<|tool_calls_section_end|>",
	parseCall: parseKimiCall,
}

const kimiArgs = "<|tool_call_argument_begin|>"

func parseKimiCall(body string, _ toolSchemas) (parsedCall, error) {
	head, rest, ok := strings.Cut(body, kimiArgs)
	if !ok {
		return parsedCall{}, fmt.Errorf("no %s after the call's ID", kimiArgs)
	}
	id := strings.TrimSpace(head)
	fn := strings.TrimPrefix(id, "functions.")
	if i := strings.LastIndexByte(fn, ':'); i >= 0 && i+1 < len(fn) && strings.Trim(fn[i+1:], "0123456789") == "" {
		fn = fn[:i]
	} else {
		return parsedCall{}, fmt.Errorf("call ID %q is not functions.NAME:INDEX", firstRunes(id, 40))
	}
	name, err := callName(fn)
	if err != nil {
		return parsedCall{}, err
	}
	args, err := jsonObject(rest)
	if err != nil {
		return parsedCall{}, fmt.Errorf("%s: %v", name, err)
	}
	return parsedCall{id: id, name: name, args: args}, nil
}
