//go:build unix

package server

import (
	"context"
	"io"
	"log"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go"
	"github.com/openai/openai-go/option"
)

// smallSendBuffers makes the server's side of each connection buffer
// little, so a client that stops reading blocks the server's writes soon.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	return c, err
}

// dialTiny connects with the smallest receive buffer the kernel allows
// (set before connecting, so the advertised window is small from the
// start).
func dialTiny(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSlowReaderIsCancelled: a streaming client that stops reading, or
// reads a trickle, cannot hold the model: once a chunk waits longer than
// the write timeout its generation is cancelled and a queued request runs.
func TestSlowReaderIsCancelled(t *testing.T) {
	for _, c := range []struct {
		name  string
		every time.Duration // 0: never reads again
	}{{"stopped", 0}, {"trickle", 500 * time.Millisecond}} {
		t.Run(c.name, func(t *testing.T) {
			var logs syncBuffer
			s := New(engine, Options{Name: "fmoe-tiny-chat", Log: log.New(&logs, "", 0),
				Timeouts: Timeouts{Write: 300 * time.Millisecond}})
			s.noStop = true // a reply long enough to fill the socket buffers
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			url, _, _ := serveLn(t, s, smallSendBuffers{ln})
			conn := dialTiny(t, ln.Addr().String())
			body := `{"stream":true,"temperature":0,"max_tokens":2000,"messages":[{"role":"user","content":"Count from 1 to 30."}]}`
			io.WriteString(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
				"Content-Length: "+itoa(len(body))+"\r\n\r\n"+body)
			head := make([]byte, 200)
			if _, err := io.ReadFull(conn, head); err != nil || !strings.HasPrefix(string(head), "HTTP/1.1 200") {
				t.Fatalf("first bytes %q, %v", head, err)
			}
			stopTrickle := make(chan struct{})
			defer close(stopTrickle)
			if c.every > 0 {
				go func() {
					buf := make([]byte, 100)
					for {
						select {
						case <-stopTrickle:
							return
						case <-time.After(c.every):
							conn.Read(buf)
						}
					}
				}()
			}
			waitFor(t, "the slow stream to generate", s.busy.Load)
			// A second request queues behind the slow one and must get the model.
			client := openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			t0 := time.Now()
			resp, err := client.Chat.Completions.New(ctx, params("Count from 5 to 12.", false))
			if err != nil || !strings.HasPrefix(resp.Choices[0].Message.Content, "5, 6, 7, 8, 9, 10, 11, 12.") {
				t.Fatalf("the queued request: %v %v", resp, err)
			}
			if wait := time.Since(t0); wait > 10*time.Second {
				t.Errorf("the queued request waited %v", wait)
			}
			if l := logs.String(); !strings.Contains(l, "stopped reading") {
				t.Errorf("the slow stream was not cut off by its stalled writes:\n%s", l)
			}
		})
	}
}

// TestHalfSentRequestsAreDropped: connections whose headers or body never
// finish, and idle kept-alive ones, are closed after the read-header,
// read and idle timeouts instead of being held open.
func TestHalfSentRequestsAreDropped(t *testing.T) {
	s := New(engine, Options{Name: "fmoe-tiny-chat", Timeouts: Timeouts{
		ReadHeader: 200 * time.Millisecond, Read: 400 * time.Millisecond, Idle: 300 * time.Millisecond}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveLn(t, s, ln)
	addr := ln.Addr().String()
	cases := map[string]string{
		"half-sent headers": "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Ty",
		"half-sent body":    "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"messages\":",
		"idle keep-alive":   "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
		"nothing sent":      "",
	}
	type result struct {
		name    string
		reply   string
		elapsed time.Duration
	}
	done := make(chan result, 10*len(cases))
	t0 := time.Now()
	for name, req := range cases {
		for range 10 {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, req)
			go func() {
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				b, _ := io.ReadAll(conn) // until the server closes
				done <- result{name, string(b), time.Since(t0)}
			}()
		}
	}
	for range 10 * len(cases) {
		r := <-done
		if r.elapsed > 3*time.Second {
			t.Errorf("%s: held open for %v", r.name, r.elapsed)
		}
		switch r.name {
		case "half-sent body":
			if !strings.Contains(r.reply, "400 Bad Request") || !strings.Contains(r.reply, "reading the request body") {
				t.Errorf("%s: reply %q", r.name, r.reply)
			}
		case "idle keep-alive":
			if !strings.HasPrefix(r.reply, "HTTP/1.1 200") {
				t.Errorf("%s: reply %q", r.name, r.reply)
			}
		}
	}
}

// TestReadTimeoutSparesLongReplies: the read timeout limits the request,
// not the reply: a stream that runs well past it is not cut off.
func TestReadTimeoutSparesLongReplies(t *testing.T) {
	s := New(engine, Options{Name: "fmoe-tiny-chat", Timeouts: Timeouts{ReadHeader: 100 * time.Millisecond, Read: 200 * time.Millisecond}})
	s.onToken = func() { time.Sleep(40 * time.Millisecond) }
	url, _, _ := serveOn(t, s)
	t0 := time.Now()
	var text strings.Builder
	for ev := range sse(t, postStream(t, url, "Count from 5 to 12.", 64)) {
		if i := strings.Index(ev, `"content":"`); i >= 0 {
			text.WriteString(strings.SplitN(ev[i+len(`"content":"`):], `"`, 2)[0])
		}
	}
	if text.String() != "5, 6, 7, 8, 9, 10, 11, 12." || time.Since(t0) < 500*time.Millisecond {
		t.Errorf("streamed %q in %v", text.String(), time.Since(t0))
	}
}
