package chat

import (
	"fmt"
	"strings"
)

// FormatDeepSeek is DeepSeek-V3's markup (V3, R1, V3.1; deepseek-ai):
// <｜User｜>/<｜Assistant｜> turns ended by <｜end▁of▁sentence｜>, <think>
// reasoning (R1, V3.1 in thinking mode), and sections of calls:
//
//	<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{JSON}<｜tool▁call▁end｜>…<｜tool▁calls▁end｜>
//
// V3.1 writes NAME<｜tool▁sep｜>{JSON}; V3 and R1 write
// function<｜tool▁sep｜>NAME, then the arguments in a ```json fence. Both
// read. The templates concatenate the arguments as JSON text.
var FormatDeepSeek = &Format{
	Name:            "deepseek",
	markers:         []string{"<｜tool▁calls▁begin｜>", "<｜Assistant｜>"},
	argumentsText:   true,
	nullCallContent: true,
	StopTokens:      []string{"<｜end▁of▁sentence｜>"},
	newParser:       deepseekMarkup.parser,
	// V3.1's markup; V3's ```json fences are not forced.
	Calls: &CallSyntax{
		Open: "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>", Again: "<｜tool▁call▁begin｜>", NameEnd: deepseekSep,
		CallEnd: "<｜tool▁call▁end｜>", Close: "<｜tool▁calls▁end｜>",
		Tags: []string{"<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", deepseekSep, "<｜tool▁call▁end｜>", "<｜tool▁calls▁end｜>", "</think>"},
	},
	callsOpen:  "<｜tool▁calls▁begin｜>",
	callsClose: []string{"<｜tool▁calls▁end｜>", "<｜tool▁call▁end｜>"},
	writeCalls: writeDeepSeekCalls,
}

// writeDeepSeekCalls writes calls as DeepSeek-V3.1's template does.
func writeDeepSeekCalls(calls []ToolCall) string {
	var b strings.Builder
	b.WriteString(deepseekMarkup.open)
	for _, c := range calls {
		b.WriteString(deepseekMarkup.callBegin + c.Function.Name + deepseekSep + compactArgs(c.Function.Arguments) + deepseekMarkup.callEnd)
	}
	return b.String() + deepseekMarkup.close
}

var deepseekMarkup = &markup{
	name:      "deepseek",
	open:      "<｜tool▁calls▁begin｜>",
	callBegin: "<｜tool▁call▁begin｜>",
	callEnd:   "<｜tool▁call▁end｜>",
	close:     "<｜tool▁calls▁end｜>",
	think:     true,
	parseCall: parseDeepSeekCall,
}

const deepseekSep = "<｜tool▁sep｜>"

func parseDeepSeekCall(body string, _ toolSchemas) (parsedCall, error) {
	left, right, ok := strings.Cut(body, deepseekSep)
	if !ok {
		return parsedCall{}, fmt.Errorf("no %s between the function name and its arguments", deepseekSep)
	}
	if strings.TrimSpace(left) == "function" {
		// V3 / R1: function<｜tool▁sep｜>NAME\n```json\n{…}\n```
		nameLine, fenced, _ := strings.Cut(right, "\n")
		fenced = strings.TrimSpace(fenced)
		if !strings.HasPrefix(fenced, "```json") || !strings.HasSuffix(fenced, "```") || len(fenced) < len("```json```") {
			return parsedCall{}, fmt.Errorf("arguments of %q are not in a ```json fence", firstRunes(nameLine, 40))
		}
		left, right = nameLine, fenced[len("```json"):len(fenced)-len("```")]
	}
	name, err := callName(left)
	if err != nil {
		return parsedCall{}, err
	}
	args, err := jsonObject(right)
	if err != nil {
		return parsedCall{}, fmt.Errorf("%s: %v", name, err)
	}
	return parsedCall{name: name, args: args}, nil
}
