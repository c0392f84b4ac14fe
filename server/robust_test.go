package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go"

	"github.com/fmoe/fmoe/chat"
)

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func decodeError(t *testing.T, body string) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == "" {
		t.Errorf("not an OpenAI error: %s", body)
	}
	return e
}

// waitFor polls cond for at most 20 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestQueueFull holds one generation, queues a second request and checks
// that a third is refused with 429 in OpenAI's error shape.
func TestQueueFull(t *testing.T) {
	s := New(engine, Options{Name: "fmoe-tiny-chat", QueueSize: 1})
	gate := make(chan struct{})
	s.onToken = func() { <-gate }
	_, c, _ := start(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	defer func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	}()

	type result struct {
		content string
		err     error
	}
	results := make(chan result, 2)
	ask := func() {
		resp, err := c.Chat.Completions.New(ctx, params("Count from 5 to 12.", false))
		if err != nil {
			results <- result{err: err}
			return
		}
		results <- result{content: resp.Choices[0].Message.Content}
	}
	go ask()
	waitFor(t, "the first request to generate", s.busy.Load)
	go ask()
	waitFor(t, "the second request to queue", func() bool { return s.waiting.Load() == 1 })

	_, err := c.Chat.Completions.New(ctx, params("Count from 5 to 12.", false))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests ||
		apiErr.Code != "rate_limit_exceeded" || apiErr.Type != "rate_limit_error" || apiErr.Message == "" {
		t.Fatalf("third request: %v", err)
	}
	close(gate)
	for range 2 {
		r := <-results
		if r.err != nil || r.content != "5, 6, 7, 8, 9, 10, 11, 12." {
			t.Errorf("queued request: %q, %v", r.content, r.err)
		}
	}
	if s.busy.Load() || s.waiting.Load() != 0 {
		t.Error("the server did not go idle")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestClientDisconnectCancels closes a stream after its first piece: the
// generation must stop within a token or two and free the model.
func TestClientDisconnectCancels(t *testing.T) {
	var logs syncBuffer
	s := New(engine, Options{Name: "fmoe-tiny-chat", Log: log.New(&logs, "", 0)})
	var pieces atomic.Int32
	s.onToken = func() {
		pieces.Add(1)
		time.Sleep(20 * time.Millisecond) // slow enough to disconnect mid-stream
	}
	_, c, _ := start(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sctx, disconnect := context.WithCancel(ctx)
	p := params("Count from 1 to 60.", false)
	p.MaxTokens = openai.Int(200)
	stream := c.Chat.Completions.NewStreaming(sctx, p)
	got := ""
	for stream.Next() {
		if ch := stream.Current(); len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
			got = ch.Choices[0].Delta.Content
			break
		}
	}
	if got == "" {
		t.Fatalf("no content before the disconnect: %v", stream.Err())
	}
	at := pieces.Load()
	disconnect()
	stream.Close()
	waitFor(t, "the generation to stop", func() bool { return strings.Contains(logs.String(), "cancelled") })
	if n := pieces.Load(); n > at+3 {
		t.Errorf("%d pieces generated after the disconnect", n-at)
	}
	if s.busy.Load() {
		waitFor(t, "the model to be released", func() bool { return !s.busy.Load() })
	}
	s.onToken = nil
	resp, err := c.Chat.Completions.New(ctx, params("Count from 5 to 12.", false))
	if err != nil || resp.Choices[0].Message.Content != "5, 6, 7, 8, 9, 10, 11, 12." {
		t.Errorf("after a cancelled stream: %v %v", resp, err)
	}
}

func TestBadRequests(t *testing.T) {
	s := New(engine, Options{Name: "fmoe-tiny-chat", MaxBodyBytes: 4096})
	_, _, url := start(t, s)
	user := `"messages":[{"role":"user","content":"hi"}]`
	for _, c := range []struct {
		body, want string
	}{
		{`{"model":"x",`, "malformed JSON"},
		{`not json`, "malformed JSON"},
		{`{"messages":"hi"}`, "malformed JSON"},
		{`{"messages":[{"role":"user","content":{"a":1}}]}`, "malformed JSON"},
		{`{"messages":[]}`, "messages must not be empty"},
		{`{}`, "messages must not be empty"},
		{`{"messages":[{"role":"robot","content":"hi"}]}`, "unknown role"},
		{`{"messages":[{"role":"system","content":"hi"}]}`, "No user query"},
		{`{` + user + `,"n":2}`, "n must be 1"},
		{`{` + user + `,"max_tokens":0}`, "max_tokens"},
		{`{` + user + `,"temperature":3}`, "temperature"},
		{`{` + user + `,"top_p":0}`, "top_p"},
		{`{` + user + `,"stop":["a","b","c","d","e"]}`, "at most 4"},
		{`{` + user + `,"stop":7}`, "stop must be"},
		{`{` + user + `,"tool_choice":"always"}`, "tool_choice"},
		{`{` + user + `,"tool_choice":"required"}`, "needs tools"},
		{`{` + user + `,"tool_choice":{"type":"function"}}`, "tool_choice"},
		{`{` + user + `,"tools":[{"type":"function","function":{}}]}`, "function.name"},
		{`{` + user + `,"tools":[{"type":"retrieval","function":{"name":"a"}}]}`, "type must be"},
	} {
		status, body := do(t, "POST", url+"/v1/chat/completions", c.body)
		var e apiError
		if status != http.StatusBadRequest || json.Unmarshal([]byte(body), &e) != nil ||
			e.Error.Type != "invalid_request_error" || !strings.Contains(e.Error.Message, c.want) {
			t.Errorf("%.60s: %d %s; want 400 mentioning %q", c.body, status, body, c.want)
		}
	}
	status, body := do(t, "POST", url+"/v1/chat/completions", `{`+user+`,"pad":"`+strings.Repeat("x", 5000)+`"}`)
	if e := decodeError(t, body); status != http.StatusRequestEntityTooLarge || !strings.Contains(e.Error.Message, "exceeds the limit of 4096 bytes") {
		t.Errorf("an oversized body: %d %s; want 413", status, body)
	}
	status, body = do(t, "GET", url+"/v1/chat/completions", "")
	if status != http.StatusNotFound || !strings.Contains(body, `"error"`) {
		t.Errorf("GET /v1/chat/completions: %d %s", status, body)
	}
	status, _ = do(t, "GET", url+"/v1/models/other", "")
	if status != http.StatusNotFound {
		t.Errorf("GET /v1/models/other: %d", status)
	}
}

// TestResponderReasoning checks the reasoning_content field in both response
// shapes (the tiny model leaves its thinking empty, so this feeds text).
func TestResponderReasoning(t *testing.T) {
	text := "Paris is in France.\n</think>\n\nIt is sunny."
	for _, stream := range []bool{false, true} {
		rec := httptest.NewRecorder()
		o := &responder{w: rec, stream: stream, id: "chatcmpl-x", name: "m",
			parser: chat.NewParser(chat.ParserOptions{StartInReasoning: true})}
		o.start()
		for _, piece := range strings.SplitAfter(text, " ") {
			o.feed(piece)
		}
		o.finish(false, &usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}, true)
		body := rec.Body.String()
		if !stream {
			var c completion
			if err := json.Unmarshal([]byte(body), &c); err != nil {
				t.Fatal(err)
			}
			m := c.Choices[0].Message
			if m.ReasoningContent != "Paris is in France." || m.Content != "It is sunny." || *c.Choices[0].FinishReason != "stop" {
				t.Errorf("message %+v", m)
			}
			continue
		}
		var reasoning, content strings.Builder
		usageSeen := false
		for _, line := range strings.Split(body, "\n") {
			data, ok := strings.CutPrefix(line, "data: ")
			if !ok || data == "[DONE]" {
				continue
			}
			var c completion
			if err := json.Unmarshal([]byte(data), &c); err != nil {
				t.Fatalf("%s: %v", data, err)
			}
			if c.Usage != nil {
				usageSeen = len(c.Choices) == 0
			}
			for _, ch := range c.Choices {
				reasoning.WriteString(ch.Delta.ReasoningContent)
				if ch.Delta.Content != nil {
					content.WriteString(*ch.Delta.Content)
				}
			}
		}
		if reasoning.String() != "Paris is in France." || content.String() != "It is sunny." || !usageSeen || !strings.HasSuffix(body, "data: [DONE]\n\n") {
			t.Errorf("stream: reasoning %q content %q usage %v\n%s", reasoning.String(), content.String(), usageSeen, body)
		}
	}
}

func TestStopFilter(t *testing.T) {
	f := stopFilter{stops: []string{", 8", "xyz"}}
	var out strings.Builder
	for _, p := range []string{"5", ", 6", ",", " 7,", " ", "8, 9"} {
		out.WriteString(f.add(p))
		if strings.Contains(out.String(), ",  ") {
			t.Fatal("held-back text was duplicated")
		}
	}
	if out.String() != "5, 6, 7" || !f.hit {
		t.Errorf("got %q, hit %v", out.String(), f.hit)
	}
	g := stopFilter{stops: []string{"END"}}
	s := g.add("a E") + g.add("N") + g.add("x") + g.flush()
	if s != "a ENx" || g.hit {
		t.Errorf("a partial stop sequence: %q", s)
	}
}
