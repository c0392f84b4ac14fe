package chat

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Result is a whole response split into its parts.
type Result struct {
	Content   string
	Reasoning string
	ToolCalls []ToolCall
	// Unparsed reports that tool-call markup could not be parsed; that
	// markup is included in Content verbatim.
	Unparsed bool
}

// Parse splits a complete response; it is Feed(text) followed by Close.
func Parse(text string, opts ParserOptions) Result {
	p := NewParser(opts)
	return Collect(append(p.Feed(text), p.Close()...))
}

// Collect folds streamed events into a Result, e.g. to build the final
// message of a streamed response.
func Collect(events []Event) Result {
	var r Result
	var content, reasoning strings.Builder
	for _, e := range events {
		switch e.Kind {
		case EventContent:
			content.WriteString(e.Text)
			r.Unparsed = r.Unparsed || e.Unparsed
		case EventReasoning:
			reasoning.WriteString(e.Text)
		case EventToolCall:
			r.ToolCalls = append(r.ToolCalls, *e.Call)
		}
	}
	r.Content, r.Reasoning = content.String(), reasoning.String()
	return r
}

// parseJSONCall reads a Qwen3 (Hermes-style) call body:
// {"name": NAME, "arguments": {...}}. Arguments given as JSON text or
// under "parameters" are accepted too.
func parseJSONCall(body string) (name, args string, ok bool) {
	var c struct {
		Name       string          `json:"name"`
		Arguments  json.RawMessage `json:"arguments"`
		Parameters json.RawMessage `json:"parameters"`
	}
	if json.Unmarshal([]byte(strings.TrimSpace(body)), &c) != nil || strings.TrimSpace(c.Name) == "" {
		return "", "", false
	}
	raw := bytes.TrimSpace(c.Arguments)
	if len(raw) == 0 {
		raw = bytes.TrimSpace(c.Parameters)
	}
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return c.Name, "{}", true
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", "", false
		}
		raw = bytes.TrimSpace([]byte(s))
	}
	if len(raw) == 0 || raw[0] != '{' {
		return "", "", false
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return "", "", false
	}
	return c.Name, b.String(), true
}
