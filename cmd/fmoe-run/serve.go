package main

import (
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/convo"
	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/server"
)

func serveCmd() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve the model over an OpenAI-compatible HTTP API",
		UsageText: "fmoe-run serve --model DIR [--addr 127.0.0.1:8080] [--api-key KEY] [--name NAME] [--queue N] [--k K] [--2bit] [--threads N] [--gpus LIST [--expert-load FILE]] [timeouts]",
		Description: `Endpoints: POST /v1/chat/completions (stream or not; tools, tool_choice, reasoning_content,
max_tokens / max_completion_tokens, temperature, top_p, stop, seed, stream_options.include_usage,
chat_template_kwargs, ignore_eos), GET /v1/models, GET /health; GET / is a chat page (open
http://ADDRESS/ in a browser), GET /v1/fmoe/stats a server-sent-event stream of each forward step's
per-layer times, expert reads, cache hits and routing (the page's live view; README, "The chat
page and the live view"). The model is observed only while a stats stream is open.

A request's "model" must be the served id (--name, default the model directory's name; GET /v1/models
lists it) or be left out; any other name gets HTTP 404 model_not_found.

The model generates one reply at a time; up to --queue requests wait, and more get HTTP 429.
A request that continues the previous conversation (the same messages plus new ones, e.g. a tool
result) reuses the model state of that prefix.

The server listens on loopback unless --addr says otherwise (host:port; an empty host, as in
":8080", means every interface). With --api-key (or FMOE_API_KEY) every request but GET /health
and the chat page's files must carry "Authorization: Bearer KEY", as OpenAI clients send their
api_key, and gets HTTP 401 otherwise (the page asks for the key). Listening beyond loopback
without a key prints a warning.

Timeouts keep one client from holding the server: a request's headers must arrive within
--read-header-timeout and the whole request within --read-timeout; a kept-alive connection is
closed after --idle-timeout without a request; a client that does not take a streamed chunk (or a
whole reply) within --write-timeout is dropped and its generation cancelled, which frees the model
for the next request. On SIGINT/SIGTERM the server stops accepting, lets running and queued
requests finish for --shutdown-grace, then cancels them (streams end with an error event and
[DONE]) and closes the model once none runs.`,
		Flags: append(modelFlags(),
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:8080", Usage: "listen `ADDRESS` (host:port)"},
			&cli.StringFlag{Name: "name", Usage: "model id reported to clients (default: the model directory's name)"},
			&cli.StringFlag{Name: "api-key", EnvVars: []string{"FMOE_API_KEY"}, Usage: "require `KEY` as \"Authorization: Bearer KEY\" (the environment variable keeps it out of the process list)"},
			&cli.IntFlag{Name: "queue", Value: 4, Usage: "requests that may wait while one generates"},
			&cli.DurationFlag{Name: "read-header-timeout", Value: 10 * time.Second, Usage: "time a request's headers may take to arrive"},
			&cli.DurationFlag{Name: "read-timeout", Value: 60 * time.Second, Usage: "time a whole request, body included, may take to arrive"},
			&cli.DurationFlag{Name: "idle-timeout", Value: 120 * time.Second, Usage: "time a kept-alive connection may wait for its next request"},
			&cli.DurationFlag{Name: "write-timeout", Value: 30 * time.Second, Usage: "time a client may take to accept one streamed chunk or a whole reply"},
			&cli.DurationFlag{Name: "shutdown-grace", Value: 10 * time.Second, Usage: "time running requests get to finish on shutdown"},
		),
		Action: runServe,
	}
}

func runServe(c *cli.Context) error {
	addr := c.String("addr")
	host, err := checkAddr(addr)
	if err != nil {
		return cliutil.UsageError("--addr %q: %v", addr, err)
	}
	if c.Int("queue") < 0 {
		return cliutil.UsageError("--queue must not be negative")
	}
	timeouts, err := serveTimeouts(c)
	if err != nil {
		return err
	}
	key := c.String("api-key")
	if w := exposureWarning(host, key); w != "" {
		fmt.Fprintln(os.Stderr, w)
	}
	// Listening before the model loads reports a taken port at once; early
	// clients wait in the backlog until the model is ready.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--addr %s: %w", addr, err)
	}
	defer ln.Close()
	dir := c.String("model")
	m, done, err := openModel(c)
	if err != nil {
		return err
	}
	defer closeModel(done)
	e, err := convo.New(m, dir)
	if err != nil {
		return err
	}
	defer e.Close()
	name := c.String("name")
	if name == "" {
		name = filepath.Base(filepath.Clean(dir))
	}
	q := c.Int("queue")
	if q == 0 {
		q = -1 // the flag's 0 means no queue; Options' 0 means the default
	}
	logger := log.New(os.Stderr, "", log.LstdFlags)
	srv := server.New(e, server.Options{Name: name, QueueSize: q, Log: logger, Timeouts: timeouts, APIKey: key})
	ctx, stop := cliutil.SignalContext()
	defer stop()
	logger.Printf("serving %s (K=%d) on http://%s/v1; chat page at http://%s/", name, m.K, ln.Addr(), ln.Addr())
	// Serve returns once no request uses the engine, so the deferred
	// Close cannot pull the model from under a generation.
	err = srv.Serve(ctx, ln)
	logger.Printf("stopped")
	return err
}

// checkAddr checks a listen address, host:port with a numeric port, and
// returns its host.
func checkAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("the port must be a number from 1 to 65535, not %q", port)
	}
	if _, ipErr := netip.ParseAddr(host); host != "" && ipErr != nil && !validHostname(host) {
		return "", fmt.Errorf("%q is neither an IP address nor a host name", host)
	}
	return host, nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// exposureWarning is the warning for a server other machines can reach
// without a key, or "".
func exposureWarning(host, key string) string {
	if isLoopback(host) || key != "" {
		return ""
	}
	where := host
	if host == "" {
		where = "all interfaces"
	}
	return fmt.Sprintf("warning: listening on %s, reachable from other machines, with no API key: anyone who can connect can use the model (set --api-key or FMOE_API_KEY)", where)
}

// isLoopback reports whether host only accepts local connections.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serveTimeouts reads the timeout flags; each must be positive.
func serveTimeouts(c *cli.Context) (server.Timeouts, error) {
	t := server.Timeouts{
		ReadHeader:    c.Duration("read-header-timeout"),
		Read:          c.Duration("read-timeout"),
		Idle:          c.Duration("idle-timeout"),
		Write:         c.Duration("write-timeout"),
		ShutdownGrace: c.Duration("shutdown-grace"),
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"read-header-timeout", t.ReadHeader}, {"read-timeout", t.Read}, {"idle-timeout", t.Idle},
		{"write-timeout", t.Write}, {"shutdown-grace", t.ShutdownGrace}} {
		if f.d <= 0 {
			return t, cliutil.UsageError("--%s must be positive, got %v", f.name, f.d)
		}
	}
	return t, nil
}
