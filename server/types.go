package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/fmoe/fmoe/chat"
)

// chatRequest is the part of an OpenAI chat.completions request the server
// honours; other fields are accepted and ignored.
type chatRequest struct {
	Model               string          `json:"model"`
	Messages            []chat.Message  `json:"messages"`
	Tools               []chat.Tool     `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	Stop                json.RawMessage `json:"stop"`
	Seed                *int64          `json:"seed"`
	N                   *int            `json:"n"`
	// IgnoreEOS keeps the model from ending its turn, so the reply runs to
	// max_tokens, as in vLLM and llama.cpp: for measuring decode speed.
	IgnoreEOS bool `json:"ignore_eos"`
	// ChatTemplateKwargs are extra template variables, as in vLLM and
	// llama.cpp; enable_thinking among them switches Qwen3.5's reasoning.
	ChatTemplateKwargs map[string]any `json:"chat_template_kwargs"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// toolChoice is the parsed tool_choice: "auto", "none", "required", or a
// named function.
type toolChoice struct {
	mode string // auto, none, required, function
	name string
}

func parseToolChoice(raw json.RawMessage, tools []chat.Tool) (toolChoice, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return toolChoice{mode: "auto"}, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch s {
		case "auto", "none", "required":
			if s == "required" && len(tools) == 0 {
				return toolChoice{}, fmt.Errorf(`tool_choice "required" needs tools`)
			}
			return toolChoice{mode: s}, nil
		}
		return toolChoice{}, fmt.Errorf(`tool_choice must be "auto", "none", "required" or {"type":"function","function":{"name":…}}, not %q`, s)
	}
	var named struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &named); err != nil || named.Type != "function" || named.Function.Name == "" {
		return toolChoice{}, fmt.Errorf(`tool_choice must be "auto", "none", "required" or {"type":"function","function":{"name":…}}`)
	}
	for _, t := range tools {
		if t.Function.Name == named.Function.Name {
			return toolChoice{mode: "function", name: named.Function.Name}, nil
		}
	}
	return toolChoice{}, fmt.Errorf("tool_choice names function %q, which is not among the tools", named.Function.Name)
}

// parseStop accepts a string or an array of up to 4 strings.
func parseStop(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one == "" {
			return nil, nil
		}
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("stop must be a string or an array of strings")
	}
	if len(many) > 4 {
		return nil, fmt.Errorf("stop takes at most 4 sequences, got %d", len(many))
	}
	out := many[:0]
	for _, s := range many {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

func (r *chatRequest) validate() error {
	if len(r.Messages) == 0 {
		return fmt.Errorf("messages must not be empty")
	}
	for i, m := range r.Messages {
		switch m.Role {
		case "system", "developer", "user", "assistant", "tool":
		default:
			return fmt.Errorf("messages[%d]: unknown role %q", i, m.Role)
		}
	}
	if err := validateTools(r.Tools); err != nil {
		return err
	}
	if r.N != nil && *r.N != 1 {
		return fmt.Errorf("n must be 1 (one generation at a time)")
	}
	for _, p := range []struct {
		name string
		v    *int
	}{{"max_tokens", r.MaxTokens}, {"max_completion_tokens", r.MaxCompletionTokens}} {
		if p.v != nil && *p.v < 1 {
			return fmt.Errorf("%s must be at least 1", p.name)
		}
	}
	// fmoe-run's flags are checked by the same function.
	return chat.Sampling{Temperature: r.Temperature, TopP: r.TopP}.Validate()
}

// toolName is OpenAI's rule for function names. It also keeps names from
// carrying markup into the prompt or the call grammar.
var toolName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

func validateTools(tools []chat.Tool) error {
	seen := map[string]int{}
	for i, t := range tools {
		field := func(f string) string { return fmt.Sprintf("tools[%d].%s", i, f) }
		if t.Type != "" && t.Type != "function" {
			return &fieldError{param: field("type"), msg: fmt.Sprintf(`%s must be "function", not %q`, field("type"), t.Type)}
		}
		name := t.Function.Name
		switch j, dup := seen[name]; {
		case name == "":
			return &fieldError{param: field("function.name"), msg: field("function.name") + " is required"}
		case !toolName.MatchString(name):
			return &fieldError{param: field("function.name"), msg: fmt.Sprintf(
				"%s %q is invalid: use 1 to 64 letters, digits, underscores or dashes", field("function.name"), name)}
		case dup:
			return &fieldError{param: field("function.name"), msg: fmt.Sprintf(
				"%s %q is already the name of tools[%d]", field("function.name"), name, j)}
		}
		seen[name] = i
		if p := bytes.TrimSpace(t.Function.Parameters); len(p) > 0 && string(p) != "null" && p[0] != '{' {
			return &fieldError{param: field("function.parameters"), msg: field("function.parameters") +
				" must be a JSON Schema object, e.g. {\"type\":\"object\",\"properties\":{…}}"}
		}
	}
	return nil
}

// Response shapes.

type completion struct {
	ID                string   `json:"id"`
	Object            string   `json:"object"`
	Created           int64    `json:"created"`
	Model             string   `json:"model"`
	SystemFingerprint string   `json:"system_fingerprint"`
	Choices           []choice `json:"choices"`
	Usage             *usage   `json:"usage,omitempty"`
	// Timings ride with the usage, under llama.cpp's field names.
	Timings *timings `json:"timings,omitempty"`
}

type choice struct {
	Index        int           `json:"index"`
	Message      *chat.Message `json:"message,omitempty"`
	Delta        *delta        `json:"delta,omitempty"`
	FinishReason *string       `json:"finish_reason"`
	Logprobs     *struct{}     `json:"logprobs"`
}

type delta struct {
	Role             string               `json:"role,omitempty"`
	Content          *string              `json:"content,omitempty"`
	ReasoningContent string               `json:"reasoning_content,omitempty"`
	ToolCalls        []chat.ToolCallDelta `json:"tool_calls,omitempty"`
}

type usage struct {
	PromptTokens        int            `json:"prompt_tokens"`
	CompletionTokens    int            `json:"completion_tokens"`
	TotalTokens         int            `json:"total_tokens"`
	PromptTokensDetails *promptDetails `json:"prompt_tokens_details,omitempty"`
}

// promptDetails reports, as OpenAI's prompt caching does, how many prompt
// tokens came from the saved session state instead of being computed.
type promptDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

type apiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	} `json:"error"`
}

func newAPIError(typ, code, msg string) apiError {
	var e apiError
	e.Error.Message, e.Error.Type, e.Error.Code = msg, typ, code
	return e
}

// fieldError is a request error that names the offending field (OpenAI's
// error.param) and, where OpenAI has one, a specific error code.
type fieldError struct {
	param, code, msg string
}

func (e *fieldError) Error() string { return e.msg }

// requestError is the OpenAI error body for a rejected request.
func requestError(err error) apiError {
	e := newAPIError("invalid_request_error", "invalid_request", err.Error())
	var fe *fieldError
	if errors.As(err, &fe) {
		if fe.param != "" {
			e.Error.Param = &fe.param
		}
		if fe.code != "" {
			e.Error.Code = fe.code
		}
	}
	return e
}
