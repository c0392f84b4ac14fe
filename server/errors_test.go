package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go"
)

// TestUnknownModel: a model name other than the served one gets OpenAI's
// 404 model_not_found naming the field; the served id and an omitted
// model are accepted.
func TestUnknownModel(t *testing.T) {
	_, c, url := start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := params("Count from 1 to 3.", false)
	p.Model = "gpt-4o"
	_, err := c.Chat.Completions.New(ctx, p)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Code != "model_not_found" ||
		apiErr.Param != "model" || !strings.Contains(apiErr.Message, `"gpt-4o"`) || !strings.Contains(apiErr.Message, `"fmoe-tiny-chat"`) {
		t.Errorf("an unknown model: %v", err)
	}
	p.Model = "fmoe-tiny-chat"
	if _, err := c.Chat.Completions.New(ctx, p); err != nil {
		t.Errorf("the served model: %v", err)
	}
	status, body := do(t, "POST", url+"/v1/chat/completions", `{"max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`)
	if status != http.StatusOK {
		t.Errorf("no model named: %d %s", status, body)
	}
}

// TestContextOverflow: a prompt longer than the model's context gets 400
// with OpenAI's context_length_exceeded, streamed or not (the stream has
// not started yet, so it is a plain HTTP error too).
func TestContextOverflow(t *testing.T) {
	_, _, url := start(t, nil)
	long := strings.Repeat("count ", engine.MaxContext()+100)
	for _, stream := range []string{"false", "true"} {
		status, body := do(t, "POST", url+"/v1/chat/completions",
			`{"stream":`+stream+`,"messages":[{"role":"user","content":"`+long+`"}]}`)
		e := decodeError(t, body)
		if status != http.StatusBadRequest || e.Error.Code != "context_length_exceeded" || !strings.Contains(e.Error.Message, "context") {
			t.Errorf("stream %s: %d %.300s", stream, status, body)
		}
	}
}
