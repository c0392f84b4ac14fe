package server

import (
	"net/http/httptest"
	"testing"

	"github.com/openai/openai-go"
	"github.com/openai/openai-go/option"
	"github.com/openai/openai-go/shared"

	"github.com/fmoe/fmoe/convo"
	"github.com/fmoe/fmoe/convo/convotest"
)

// engine is the built-in fmoe-tiny-chat model, packed once per test binary.
// Tests share it and so must not run in parallel.
var engine *convo.Engine

func TestMain(m *testing.M) {
	convotest.Main(m, "../models/fmoe-tiny-chat/mlx-4bit", &engine)
}

// start serves s (a fresh Server over the shared engine when nil) and
// returns an OpenAI client for it.
func start(t *testing.T, s *Server) (*Server, openai.Client, string) {
	t.Helper()
	if s == nil {
		s = New(engine, Options{Name: "fmoe-tiny-chat"})
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	c := openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	return s, c, ts.URL
}

// tools are the two the model was trained with.
var tools = []openai.ChatCompletionToolParam{
	{Function: shared.FunctionDefinitionParam{
		Name:        "get_weather",
		Description: openai.String("Current weather for a city"),
		Parameters: openai.FunctionParameters{
			"type": "object",
			"properties": map[string]any{
				"city": map[string]any{"type": "string"},
				"unit": map[string]any{"type": "string", "enum": []string{"c", "f"}},
			},
			"required": []string{"city"},
		},
	}},
	{Function: shared.FunctionDefinitionParam{
		Name:        "bash",
		Description: openai.String("Run a shell command"),
		Parameters: openai.FunctionParameters{
			"type":       "object",
			"properties": map[string]any{"command": map[string]any{"type": "string"}},
			"required":   []string{"command"},
		},
	}},
}

func params(user string, withTools bool) openai.ChatCompletionNewParams {
	p := openai.ChatCompletionNewParams{
		Model:       "fmoe-tiny-chat",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage(user)},
		Temperature: openai.Float(0),
		MaxTokens:   openai.Int(64),
	}
	if withTools {
		p.Tools = tools
	}
	return p
}
