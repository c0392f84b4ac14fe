package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// CallMarkup is the text of tool calls as this template writes them in an
// assistant turn: what a reply holding the calls reads as when they stay
// text (tool_choice "none"). The template is the authority, so the markup
// is cut out of a rendered turn, from the format's opening of calls to its
// last closing (DeepSeek-V3's template leaves the section's end tag to
// the tool results, so there it is the last call's end); a template that renders no calls (Kimi-K2's first one)
// gets the format's own markup, as does a call the template rejects.
func (t *Template) CallMarkup(calls []ToolCall) string {
	if len(calls) == 0 {
		return ""
	}
	f := t.format
	msgs := []Message{{Role: "user", Content: "q"}, {Role: "assistant", ToolCalls: calls}}
	out, err := t.Render(msgs, nil, RenderOptions{})
	if i := strings.Index(out, f.callsOpen); err == nil && i >= 0 {
		for _, end := range f.callsClose {
			if j := strings.LastIndex(out, end); j > i {
				return out[i : j+len(end)]
			}
		}
	}
	return f.writeCalls(calls)
}

// orderedArgs is a call's JSON arguments in their order, each value as the
// templates write it: a string as it is, anything else as compact JSON.
// Arguments that are not a JSON object give none.
func orderedArgs(args string) (keys, values []string) {
	d := json.NewDecoder(strings.NewReader(args))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil
	}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return keys, values
		}
		var raw json.RawMessage
		if d.Decode(&raw) != nil {
			return keys, values
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			var b bytes.Buffer
			json.Compact(&b, raw)
			s = b.String()
		}
		keys, values = append(keys, fmt.Sprint(tok)), append(values, s)
	}
	return keys, values
}

// compactArgs is a call's arguments as compact JSON, "{}" when empty.
func compactArgs(args string) string {
	var b bytes.Buffer
	if json.Compact(&b, []byte(args)) != nil || b.Len() == 0 {
		return "{}"
	}
	return b.String()
}
