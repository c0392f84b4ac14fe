package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Message is one chat turn in the OpenAI chat-completions shape.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// ReasoningContent is the assistant's thinking. Empty means "not given":
	// the template then recovers reasoning from <think>…</think> in Content.
	ReasoningContent string     `json:"reasoning_content,omitempty"`
	ToolCalls        []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID       string     `json:"tool_call_id,omitempty"`
	Name             string     `json:"name,omitempty"`
}

// ToolCall is a function call made by the assistant.
type ToolCall struct {
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type"`
	Function FunctionCall `json:"function"`
}

// FunctionCall names the function and carries its arguments as JSON text,
// which is what OpenAI clients send and expect back.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Tool declares a function the model may call.
type Tool struct {
	Type     string       `json:"type"`
	Function ToolFunction `json:"function"`
}

// ToolFunction is a tool's name, description and JSON-Schema parameters.
type ToolFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

type contentPart struct {
	Type string  `json:"type"`
	Text *string `json:"text"`
}

// UnmarshalJSON accepts content as a string, null, or an array of
// {"type":"text","text":…} parts (joined with no separator, as the Qwen
// templates do), and "reasoning" as an alias of reasoning_content.
func (m *Message) UnmarshalJSON(data []byte) error {
	var raw struct {
		Role             string          `json:"role"`
		Content          json.RawMessage `json:"content"`
		ReasoningContent *string         `json:"reasoning_content"`
		Reasoning        *string         `json:"reasoning"`
		ToolCalls        []ToolCall      `json:"tool_calls"`
		ToolCallID       string          `json:"tool_call_id"`
		Name             string          `json:"name"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("message: %w", err)
	}
	content, err := decodeContent(raw.Content)
	if err != nil {
		return err
	}
	*m = Message{Role: raw.Role, Content: content, ToolCalls: raw.ToolCalls, ToolCallID: raw.ToolCallID, Name: raw.Name}
	switch {
	case raw.ReasoningContent != nil:
		m.ReasoningContent = *raw.ReasoningContent
	case raw.Reasoning != nil:
		m.ReasoningContent = *raw.Reasoning
	}
	return nil
}

func decodeContent(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("message content: %w", err)
		}
		return s, nil
	case '[':
		var parts []contentPart
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", fmt.Errorf("message content: expected a string or an array of {type, text} parts: %w", err)
		}
		var b strings.Builder
		for i, p := range parts {
			if p.Type != "text" {
				return "", fmt.Errorf("message content[%d]: part type %q is not supported (only \"text\")", i, p.Type)
			}
			if p.Text == nil {
				return "", fmt.Errorf("message content[%d]: text part has no \"text\" field", i)
			}
			b.WriteString(*p.Text)
		}
		return b.String(), nil
	}
	return "", fmt.Errorf("message content: expected a string, null or an array of parts, got %s", firstBytes(raw))
}

func firstBytes(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}

// MarshalJSON writes content as null for an assistant message that only
// calls tools, as OpenAI does.
func (m Message) MarshalJSON() ([]byte, error) {
	type plain Message
	var content any = m.Content
	if m.Content == "" && len(m.ToolCalls) > 0 {
		content = nil
	}
	return json.Marshal(struct {
		plain
		Content any `json:"content"`
	}{plain(m), content})
}

// UnmarshalJSON accepts arguments as JSON text (OpenAI) or as an inline
// JSON object (Hugging Face), storing compact JSON text either way.
func (f *FunctionCall) UnmarshalJSON(data []byte) error {
	var raw struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("tool call function: %w", err)
	}
	f.Name = raw.Name
	f.Arguments = ""
	args := bytes.TrimSpace(raw.Arguments)
	switch {
	case len(args) == 0 || bytes.Equal(args, []byte("null")):
	case args[0] == '"':
		if err := json.Unmarshal(args, &f.Arguments); err != nil {
			return fmt.Errorf("tool call %q arguments: %w", raw.Name, err)
		}
	default:
		var b bytes.Buffer
		if err := json.Compact(&b, args); err != nil {
			return fmt.Errorf("tool call %q arguments: %w", raw.Name, err)
		}
		f.Arguments = b.String()
	}
	return nil
}
