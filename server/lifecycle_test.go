package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fmoe/fmoe/convo"
	"github.com/fmoe/fmoe/runtime/model"
)

// ownEngine opens a second engine on the packed built-in model, which a
// test may close without disturbing the shared one.
func ownEngine(t *testing.T) *convo.Engine {
	t.Helper()
	e, err := convo.Open(engine.Dir, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// serveOn runs s.Serve on a loopback port until the returned shutdown is
// called; wait waits for Serve's result (at most 30 s).
func serveOn(t *testing.T, s *Server) (url string, shutdown context.CancelFunc, wait func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveLn(t, s, ln)
}

func serveLn(t *testing.T, s *Server, ln net.Listener) (url string, shutdown context.CancelFunc, wait func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- s.Serve(ctx, ln) }()
	wait = sync.OnceValue(func() error {
		select {
		case err := <-ch:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("Serve did not return")
		}
	})
	t.Cleanup(func() {
		cancel()
		if err := wait(); err != nil {
			t.Error(err)
		}
	})
	return "http://" + ln.Addr().String(), cancel, wait
}

// sse reads a stream's events as they arrive; it ends when the body does.
func sse(t *testing.T, resp *http.Response) <-chan string {
	ch := make(chan string, 1000)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				ch <- data
			}
		}
		if sc.Err() != nil {
			ch <- "read error: " + sc.Err().Error()
		}
	}()
	return ch
}

func postStream(t *testing.T, url, user string, maxTokens int) *http.Response {
	t.Helper()
	body := `{"model":"fmoe-tiny-chat","stream":true,"temperature":0,"max_tokens":` + itoa(maxTokens) +
		`,"messages":[{"role":"user","content":"` + user + `"}]}`
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return resp
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestShutdownCutsOffAfterGrace closes the server while a stream is
// generating and the grace period is too short for it: the client gets
// an error event and [DONE], Serve returns only after the generation
// ended, and the model is closed after that without a crash.
func TestShutdownCutsOffAfterGrace(t *testing.T) {
	e := ownEngine(t)
	var logs syncBuffer
	s := New(e, Options{Name: "fmoe-tiny-chat", Log: log.New(&logs, "", 0),
		Timeouts: Timeouts{ShutdownGrace: 300 * time.Millisecond}})
	var pieces atomic.Int32
	s.onToken = func() {
		pieces.Add(1)
		time.Sleep(30 * time.Millisecond)
	}
	url, shutdown, wait := serveOn(t, s)
	events := sse(t, postStream(t, url, "Count from 1 to 60.", 400))
	for ev := range events {
		if strings.Contains(ev, `"content":"1`) {
			break
		}
	}
	shutdown()
	start := time.Now()
	if err := wait(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	elapsed := time.Since(start)
	if !strings.Contains(logs.String(), "cancelled") {
		t.Fatalf("Serve returned before the generation ended; log:\n%s", logs.String())
	}
	if elapsed < 250*time.Millisecond || elapsed > 5*time.Second {
		t.Errorf("Serve returned %v after the shutdown began; want the 300ms grace period, then a prompt stop", elapsed)
	}
	n := pieces.Load()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	var last []string
	for ev := range events {
		last = append(last, ev)
	}
	if len(last) < 2 || last[len(last)-1] != "[DONE]" {
		t.Fatalf("the stream did not end with [DONE]: %q", last)
	}
	var apiErr apiError
	if json.Unmarshal([]byte(last[len(last)-2]), &apiErr) != nil || apiErr.Error.Code != "server_shutting_down" ||
		!strings.Contains(apiErr.Error.Message, "shutting down") {
		t.Errorf("the event before [DONE]: %s", last[len(last)-2])
	}
	time.Sleep(100 * time.Millisecond)
	if pieces.Load() != n {
		t.Error("generation went on after Serve returned")
	}
	// The closed engine (session, then model) refuses to run rather than
	// reading freed buffers or unmapped memory.
	if _, err := e.Generate(context.Background(), "hi", convo.Options{MaxTokens: 1}); err == nil || !strings.Contains(strings.ToLower(err.Error()), "close") {
		t.Errorf("a generation after Close: %v", err)
	}
}

// TestShutdownDrains closes the server mid-stream with time to spare: the
// reply completes normally, and new requests are no longer taken.
func TestShutdownDrains(t *testing.T) {
	e := ownEngine(t)
	s := New(e, Options{Name: "fmoe-tiny-chat", Timeouts: Timeouts{ShutdownGrace: 20 * time.Second}})
	s.onToken = func() { time.Sleep(10 * time.Millisecond) }
	url, shutdown, wait := serveOn(t, s)
	events := sse(t, postStream(t, url, "Count from 5 to 12.", 64))
	<-events // the role chunk
	shutdown()
	var text strings.Builder
	var all []string
	for ev := range events {
		all = append(all, ev)
		var c completion
		if json.Unmarshal([]byte(ev), &c) == nil && len(c.Choices) > 0 && c.Choices[0].Delta.Content != nil {
			text.WriteString(*c.Choices[0].Delta.Content)
		}
	}
	if text.String() != "5, 6, 7, 8, 9, 10, 11, 12." || all[len(all)-1] != "[DONE]" {
		t.Errorf("the drained stream: %q, events %q", text.String(), all)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader("{}")); err == nil {
		t.Error("a request after the shutdown was taken")
	}
}
