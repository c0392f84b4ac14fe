package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fmoe/fmoe/chat/internal/jinja"
)

// Template is a checkpoint's chat template, rendered the way Hugging Face
// apply_chat_template renders it. It is safe for concurrent use.
type Template struct {
	def     *jinja.Template
	toolUse *jinja.Template // optional variant HF picks when tools are given
	// special holds the tokenizer's special tokens (bos_token, eos_token, …),
	// which HF passes to every render.
	special map[string]any
	format  *Format
}

// Format is the chat markup the template writes, which the model's replies
// use too (DetectFormat).
func (t *Template) Format() *Format { return t.format }

// RenderOptions are the apply_chat_template arguments besides messages and tools.
type RenderOptions struct {
	AddGenerationPrompt bool
	// EnableThinking is passed as enable_thinking when non-nil; nil leaves
	// it undefined so the template's own default applies.
	EnableThinking *bool
	// Vars are extra template variables (chat_template_kwargs). Values must
	// be JSON-marshalable.
	Vars map[string]any
}

// ParseTemplate compiles Jinja template source.
func ParseTemplate(src string) (*Template, error) {
	t, err := jinja.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	return &Template{def: t, format: DetectFormat(src)}, nil
}

// LoadTemplate reads a checkpoint directory's chat template with Hugging
// Face precedence: chat_template.jinja, then chat_template.json, then the
// chat_template field of tokenizer_config.json. Special tokens come from
// tokenizer_config.json when it exists.
func LoadTemplate(dir string) (*Template, error) {
	cfg, err := readJSONFile(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil {
		return nil, err
	}
	var t *Template
	if src, err := os.ReadFile(filepath.Join(dir, "chat_template.jinja")); err == nil {
		if t, err = ParseTemplate(string(src)); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "chat_template.jinja"), err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if t == nil {
		js, err := readJSONFile(filepath.Join(dir, "chat_template.json"))
		if err != nil {
			return nil, err
		}
		for _, src := range []struct {
			m    map[string]json.RawMessage
			name string
		}{{js, "chat_template.json"}, {cfg, "tokenizer_config.json"}} {
			raw, ok := src.m["chat_template"]
			if !ok || t != nil {
				continue
			}
			if t, err = templateFromField(raw); err != nil {
				return nil, fmt.Errorf("%s: %w", filepath.Join(dir, src.name), err)
			}
		}
	}
	if t == nil {
		return nil, fmt.Errorf("no chat template in %s: looked for chat_template.jinja, chat_template.json and the chat_template field of tokenizer_config.json", dir)
	}
	t.special = specialTokens(cfg)
	return t, nil
}

func readJSONFile(path string) (map[string]json.RawMessage, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// templateFromField accepts a template string or HF's list of named
// templates [{name, template}].
func templateFromField(raw json.RawMessage) (*Template, error) {
	var src string
	if err := json.Unmarshal(raw, &src); err == nil {
		return ParseTemplate(src)
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &named); err != nil {
		return nil, fmt.Errorf("chat_template: expected a string or a list of {name, template}: %w", err)
	}
	t := &Template{}
	for _, n := range named {
		p, err := jinja.Parse(n.Template)
		if err != nil {
			return nil, fmt.Errorf("chat template %q: %w", n.Name, err)
		}
		switch n.Name {
		case "default":
			t.def = p
			t.format = DetectFormat(n.Template)
		case "tool_use":
			t.toolUse = p
		}
	}
	if t.def == nil {
		return nil, fmt.Errorf("chat_template: the list of named templates has no \"default\"")
	}
	return t, nil
}

func specialTokens(cfg map[string]json.RawMessage) map[string]any {
	out := map[string]any{}
	for _, name := range []string{"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"} {
		raw, ok := cfg[name]
		if !ok {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			out[name] = s
			continue
		}
		var added struct {
			Content *string `json:"content"`
		}
		if json.Unmarshal(raw, &added) == nil && added.Content != nil {
			out[name] = *added.Content
		}
	}
	return out
}

var reservedVars = map[string]bool{"messages": true, "tools": true, "documents": true, "add_generation_prompt": true}

// Render produces the prompt text for a conversation.
func (t *Template) Render(messages []Message, tools []Tool, opts RenderOptions) (string, error) {
	vars := map[string]any{}
	for k, v := range t.special {
		vars[k] = v
	}
	for k, v := range opts.Vars {
		if reservedVars[k] {
			return "", fmt.Errorf("chat template variable %q is set by Render and cannot be passed in Vars", k)
		}
		tv, err := toValue(v)
		if err != nil {
			return "", fmt.Errorf("chat template variable %q: %w", k, err)
		}
		vars[k] = tv
	}
	if opts.EnableThinking != nil {
		vars["enable_thinking"] = *opts.EnableThinking
	}
	msgs, err := messageValues(messages, t.format)
	if err != nil {
		return "", err
	}
	vars["messages"] = msgs
	vars["tools"] = nil
	if len(tools) > 0 {
		if vars["tools"], err = toolValues(tools); err != nil {
			return "", err
		}
	}
	vars["documents"] = nil
	vars["add_generation_prompt"] = opts.AddGenerationPrompt
	tpl := t.def
	if len(tools) > 0 && t.toolUse != nil {
		tpl = t.toolUse
	}
	out, err := tpl.Render(vars)
	if err != nil {
		var ex *jinja.ExceptionError
		if errors.As(err, &ex) {
			return "", fmt.Errorf("chat template rejected the conversation: %s", ex.Message)
		}
		return "", fmt.Errorf("chat template: %w", err)
	}
	return out, nil
}

func toValue(v any) (any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jinja.FromJSON(data)
}

// messageValues builds the dicts HF would see. Keys are present only when
// set, because templates test `is defined` and `is string` on them.
// The format says how its template wants tool calls (Format.argumentsText,
// Format.nullCallContent).
func messageValues(messages []Message, f *Format) ([]any, error) {
	out := make([]any, len(messages))
	for i, m := range messages {
		d := jinja.NewDict()
		d.Set("role", m.Role)
		if f.nullCallContent && m.Content == "" && len(m.ToolCalls) > 0 {
			d.Set("content", nil)
		} else {
			d.Set("content", m.Content)
		}
		if m.ReasoningContent != "" {
			d.Set("reasoning_content", m.ReasoningContent)
		}
		if len(m.ToolCalls) > 0 {
			calls := make([]any, len(m.ToolCalls))
			for j, c := range m.ToolCalls {
				args, err := argumentsValue(c.Function.Arguments, f.argumentsText)
				if err != nil {
					return nil, fmt.Errorf("messages[%d].tool_calls[%d].function.arguments: %w", i, j, err)
				}
				fn := jinja.NewDict()
				fn.Set("name", c.Function.Name)
				fn.Set("arguments", args)
				cd := jinja.NewDict()
				if c.ID != "" {
					cd.Set("id", c.ID)
				}
				typ := c.Type
				if typ == "" {
					typ = "function"
				}
				cd.Set("type", typ)
				cd.Set("function", fn)
				calls[j] = cd
			}
			d.Set("tool_calls", calls)
		}
		if m.ToolCallID != "" {
			d.Set("tool_call_id", m.ToolCallID)
		}
		if m.Name != "" {
			d.Set("name", m.Name)
		}
		out[i] = d
	}
	return out, nil
}

// argumentsValue parses OpenAI's JSON-text arguments into a mapping, since
// templates iterate them with |items (as vLLM does before rendering). With
// asText they are checked the same way but passed on as the text itself.
func argumentsValue(args string, asText bool) (any, error) {
	if args == "" {
		if asText {
			return "{}", nil
		}
		return jinja.NewDict(), nil
	}
	v, err := jinja.FromJSON([]byte(args))
	if err != nil {
		return nil, fmt.Errorf("expected a JSON object: %w", err)
	}
	if _, ok := v.(*jinja.Dict); !ok {
		return nil, fmt.Errorf("expected a JSON object, got %s", firstBytes([]byte(args)))
	}
	if asText {
		return args, nil
	}
	return v, nil
}

func toolValues(tools []Tool) ([]any, error) {
	out := make([]any, len(tools))
	for i, t := range tools {
		fn := jinja.NewDict()
		fn.Set("name", t.Function.Name)
		if t.Function.Description != "" {
			fn.Set("description", t.Function.Description)
		}
		if len(t.Function.Parameters) > 0 {
			p, err := jinja.FromJSON(t.Function.Parameters)
			if err != nil {
				return nil, fmt.Errorf("tools[%d].function.parameters: %w", i, err)
			}
			fn.Set("parameters", p)
		}
		d := jinja.NewDict()
		typ := t.Type
		if typ == "" {
			typ = "function"
		}
		d.Set("type", typ)
		d.Set("function", fn)
		out[i] = d
	}
	return out, nil
}
