package main

import (
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"

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
otherwise; it has no authentication.`,
		Flags: append(modelFlags(),
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:8080", Usage: "listen `ADDRESS` (host:port)"},
			&cli.StringFlag{Name: "name", Usage: "model id reported to clients (default: the model directory's name)"},
			&cli.IntFlag{Name: "queue", Value: 4, Usage: "requests that may wait while one generates"},
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
	srv := server.New(e, server.Options{Name: name, QueueSize: q, Log: logger})
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
