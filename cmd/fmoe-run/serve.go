package main

import (
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
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
		UsageText: "fmoe-run serve --model DIR [--addr 127.0.0.1:8080] [--name NAME] [--queue N] [--k K] [--2bit] [--threads N]",
		Description: `Endpoints: POST /v1/chat/completions (stream or not; tools, tool_choice, reasoning_content,
max_tokens / max_completion_tokens, temperature, top_p, stop, seed, stream_options.include_usage,
chat_template_kwargs), GET /v1/models, GET /health.

A request's "model" must be the served id (--name, default the model directory's name; GET /v1/models
lists it) or be left out; any other name gets HTTP 404 model_not_found.

The model generates one reply at a time; up to --queue requests wait, and more get HTTP 429.
A request that continues the previous conversation (the same messages plus new ones, e.g. a tool
result) reuses the model state of that prefix. The server listens on loopback unless --addr says
otherwise; it has no authentication.

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
	host, _, err := net.SplitHostPort(addr)
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
	if !isLoopback(host) {
		fmt.Fprintf(os.Stderr, "warning: listening on %s, reachable from other machines; the API has no authentication\n", addr)
	}
	dir := c.String("model")
	m, err := openModel(c)
	if err != nil {
		return err
	}
	e, err := convo.New(m, dir)
	if err != nil {
		m.Close()
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
	srv := server.New(e, server.Options{Name: name, QueueSize: q, Log: logger, Timeouts: timeouts})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	ctx, stop := cliutil.SignalContext()
	defer stop()
	logger.Printf("serving %s (K=%d) on http://%s/v1", name, m.K, ln.Addr())
	// Serve returns once no request uses the engine, so the deferred
	// Close cannot pull the model from under a generation.
	err = srv.Serve(ctx, ln)
	logger.Printf("stopped")
	return err
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
