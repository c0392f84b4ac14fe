package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go"
	"github.com/openai/openai-go/option"
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

// TestToolValidation: tool names follow OpenAI's rule (so markup cannot
// ride in on one), parameters must be a schema object, names are unique;
// each error names the field.
func TestToolValidation(t *testing.T) {
	_, _, url := start(t, nil)
	tool := func(name, params string) string {
		s := `{"type":"function","function":{"name":` + name
		if params != "" {
			s += `,"parameters":` + params
		}
		return s + `}}`
	}
	obj := `{"type":"object","properties":{}}`
	for _, c := range []struct {
		tools, param string // param "" means accepted
	}{
		{tool(`"x></function></tool_call>"`, obj), "tools[0].function.name"},
		{tool(`"get weather"`, obj), "tools[0].function.name"},
		{tool(`"`+strings.Repeat("a", 65)+`"`, obj), "tools[0].function.name"},
		{tool(`"é"`, obj), "tools[0].function.name"},
		{tool(`""`, obj), "tools[0].function.name"},
		{tool(`"a"`, `"object"`), "tools[0].function.parameters"},
		{tool(`"a"`, `[]`), "tools[0].function.parameters"},
		{tool(`"a"`, `7`), "tools[0].function.parameters"},
		{tool(`"a"`, obj) + "," + tool(`"b"`, obj) + "," + tool(`"a"`, obj), "tools[2].function.name"},
		{`{"type":"retrieval","function":{"name":"a"}}`, "tools[0].type"},
		{tool(`"`+strings.Repeat("a", 64)+`"`, obj) + "," + tool(`"get-weather_2"`, "") + "," + tool(`"c"`, "null"), ""},
	} {
		status, body := do(t, "POST", url+"/v1/chat/completions",
			`{"max_tokens":1,"messages":[{"role":"user","content":"hi"}],"tools":[`+c.tools+`]}`)
		if c.param == "" {
			if status != http.StatusOK {
				t.Errorf("%.80s: %d %s", c.tools, status, body)
			}
			continue
		}
		e := decodeError(t, body)
		if status != http.StatusBadRequest || e.Error.Param == nil || *e.Error.Param != c.param ||
			e.Error.Type != "invalid_request_error" || !strings.Contains(e.Error.Message, c.param) {
			t.Errorf("%.80s: %d %s; want 400 naming %s", c.tools, status, body, c.param)
		}
	}
}

// TestAPIKey: with a key set, every route but /health wants it as a
// Bearer token and answers 401 in OpenAI's shape otherwise.
func TestAPIKey(t *testing.T) {
	s := New(engine, Options{Name: "fmoe-tiny-chat", APIKey: "s3cret-key"})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call := func(method, path, auth string) (int, string) {
		req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(`{"max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, auth := range []string{"", "Bearer", "Bearer wrong", "Bearer s3cret-key2", "Bearer s3cret-ke", "Basic s3cret-key", "s3cret-key"} {
		for _, route := range [][2]string{{"POST", "/v1/chat/completions"}, {"GET", "/v1/models"}, {"GET", "/v1/models/fmoe-tiny-chat"}} {
			status, body := call(route[0], route[1], auth)
			if e := decodeError(t, body); status != http.StatusUnauthorized || e.Error.Code != "invalid_api_key" {
				t.Errorf("%s %s with %q: %d %s", route[0], route[1], auth, status, body)
			}
		}
	}
	if status, body := call("GET", "/health", ""); status != http.StatusOK {
		t.Errorf("/health without a key: %d %s", status, body)
	}
	if status, body := call("POST", "/v1/chat/completions", "Bearer s3cret-key"); status != http.StatusOK {
		t.Errorf("with the key: %d %s", status, body)
	}
	c := openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey("s3cret-key"), option.WithMaxRetries(0))
	if _, err := c.Chat.Completions.New(ctx, params("Count from 1 to 3.", false)); err != nil {
		t.Errorf("the OpenAI client with the key: %v", err)
	}
	c = openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey("nope"), option.WithMaxRetries(0))
	_, err := c.Models.List(ctx)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
		t.Errorf("the OpenAI client with a wrong key: %v", err)
	}
}
