package chat

import (
	"fmt"
	"strings"
)

// FormatGLM45 is GLM-4.5's markup (GLM-4.5, 4.6, 4.7; zai-org): [gMASK]<sop>,
// <|system|>/<|user|>/<|assistant|>/<|observation|> turns, <think> reasoning,
// and one call per <tool_call>:
//
//	<tool_call>NAME
//	<arg_key>KEY</arg_key>
//	<arg_value>VALUE</arg_value>
//	</tool_call>
//
// The template writes string values as they are and others as JSON, so a
// value is typed by the tool's schema as Qwen3.5's parameters are.
var FormatGLM45 = &Format{
	Name:       "glm45",
	markers:    []string{"<arg_key>", "[gMASK]<sop>"},
	StopTokens: []string{"<|user|>", "<|observation|>", "<|endoftext|>"},
	newParser:  glm45Markup.parser,
	Calls: &CallSyntax{
		Lead: "\n", Open: "<tool_call>", Again: "\n<tool_call>", NameEnd: "\n",
		Param: true, ParamOpen: glmKey, ParamMid: glmKeyEnd + "\n" + glmValue, ValueEnd: glmValueEnd, AfterValue: "\n",
		CallEnd: "</tool_call>",
		Tags:    []string{glmKey, glmKeyEnd, glmValue, "<tool_call>", "</tool_call>", "</think>"},
	},
	callsOpen:  "<tool_call>",
	callsClose: []string{"</tool_call>"},
	writeCalls: writeGLM45Calls,
}

// writeGLM45Calls writes calls as GLM-4.5's template does.
func writeGLM45Calls(calls []ToolCall) string {
	return writeParamCalls(calls, func(name string) string { return "<tool_call>" + name + "\n" },
		func(key, value string) string {
			return glmKey + key + glmKeyEnd + "\n" + glmValue + value + glmValueEnd + "\n"
		},
		"</tool_call>")
}

var glm45Markup = &markup{
	name:      "glm45",
	open:      "<tool_call>",
	callEnd:   "</tool_call>",
	think:     true,
	parseCall: parseGLM45Call,
}

const (
	glmKey      = "<arg_key>"
	glmKeyEnd   = "</arg_key>"
	glmValue    = "<arg_value>"
	glmValueEnd = "</arg_value>"
)

func parseGLM45Call(body string, schemas toolSchemas) (parsedCall, error) {
	head, rest, found := strings.Cut(body, glmKey)
	name, err := callName(head)
	if err != nil {
		return parsedCall{}, err
	}
	if found {
		rest = glmKey + rest
	}
	var args strings.Builder
	seen := map[string]bool{}
	for strings.TrimLeft(rest, spaces) != "" {
		var key, value string
		if key, rest, err = glmElement(rest, glmKey, glmKeyEnd); err != nil {
			return parsedCall{}, fmt.Errorf("%s: %v", name, err)
		}
		if value, rest, err = glmElement(rest, glmValue, glmValueEnd); err != nil {
			return parsedCall{}, fmt.Errorf("%s: argument %q: %v", name, key, err)
		}
		if seen[key] {
			return parsedCall{}, fmt.Errorf("%s: argument %q given twice", name, key)
		}
		seen[key] = true
		sep := ","
		if args.Len() == 0 {
			sep = "{"
		}
		args.WriteString(sep + jsonString(key) + ":" + typedValue(value, schemas.lookup(name, key)))
	}
	if args.Len() == 0 {
		return parsedCall{name: name, args: "{}"}, nil
	}
	return parsedCall{name: name, args: args.String() + "}"}, nil
}

// glmElement reads <open>TEXT</close> after optional spaces.
func glmElement(s, open, close string) (text, rest string, err error) {
	s = strings.TrimLeft(s, spaces)
	if !strings.HasPrefix(s, open) {
		return "", "", fmt.Errorf("expected %s, found %q", open, firstRunes(s, 24))
	}
	text, rest, ok := strings.Cut(s[len(open):], close)
	if !ok {
		return "", "", fmt.Errorf("%s has no %s", open, close)
	}
	return text, rest, nil
}
