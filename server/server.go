// Package server serves a model over an OpenAI-compatible HTTP API:
// POST /v1/chat/completions (plain and streamed, with tools and reasoning),
// GET /v1/models and GET /health, with a chat page at GET / and a live view
// of the model's steps at GET /v1/fmoe/stats.
//
// The model runs one generation at a time. Requests wait in a bounded queue
// and get HTTP 429 when it is full. The server keeps one session and the
// tokens it holds; a request whose prompt continues those tokens (the usual
// agent loop: the same conversation plus a tool result) only computes the new
// tokens, and usage.prompt_tokens_details.cached_tokens says how many were
// reused. A new user turn, whose prompt re-renders the last reply differently,
// reuses instead the state the engine snapshotted at the end of the last
// prompt's conversation (convo).
package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fmoe/fmoe/convo"
)

// Options configure a Server.
type Options struct {
	// Name is the model id in responses and /v1/models, and the only
	// model name a request may ask for (or leave out).
	Name string
	// QueueSize is how many requests may wait while one generates (0: 4;
	// negative: none wait).
	QueueSize int
	// MaxBodyBytes bounds a request body (0: 4 MiB).
	MaxBodyBytes int64
	// Log receives one line per request; nil discards.
	Log *log.Logger
	// Timeouts bound how long a client may hold a connection; see Serve.
	Timeouts Timeouts
	// APIKey, when set, must come with every request but GET /health as
	// "Authorization: Bearer KEY"; others get HTTP 401.
	APIKey string
}

// Server is the HTTP API over one engine.
type Server struct {
	e    *convo.Engine
	opts Options
	// admit has one slot per request allowed in (running or queued); run
	// has one, held by the request that is generating.
	admit     chan struct{}
	run       chan struct{}
	waiting   atomic.Int32
	busy      atomic.Bool
	created   int64
	fp        string
	textsOnce sync.Once
	texts     []string
	special   []bool
	// onToken, when set (tests), runs for every piece of generated text.
	onToken func()
	// hub streams the model's steps to GET /v1/fmoe/stats (stats.go).
	hub statsHub
	// noStop, when set (tests), keeps the model from ending its turn, so
	// the tiny model's replies run to max_tokens.
	noStop bool

	// base is cancelled when a shutdown's grace period is over: it stops
	// every generation and every request still queued.
	base    context.Context
	stopAll context.CancelFunc
	// mu guards closing and active (requests admitted to the queue or
	// generating); drained is closed once closing and active is 0.
	mu          sync.Mutex
	closing     bool
	active      int
	drained     chan struct{}
	drainClosed bool
}

// New returns a server for e. The server owns e's session from now on.
func New(e *convo.Engine, o Options) *Server {
	if o.QueueSize == 0 {
		o.QueueSize = 4
	}
	if o.QueueSize < 0 {
		o.QueueSize = 0
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 4 << 20
	}
	if o.Name == "" {
		o.Name = "fmoe"
	}
	if o.Log == nil {
		o.Log = log.New(io.Discard, "", 0)
	}
	o.Timeouts = o.Timeouts.withDefaults()
	base, stopAll := context.WithCancel(context.Background())
	return &Server{
		e: e, opts: o, hub: statsHub{m: e.Model},
		admit:   make(chan struct{}, 1+o.QueueSize),
		run:     make(chan struct{}, 1),
		created: time.Now().Unix(),
		fp:      fmt.Sprintf("fmoe-k%d", e.Model.K),
		base:    base, stopAll: stopAll,
		drained: make(chan struct{}),
	}
}

// Handler routes the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.chatCompletions)
	mux.HandleFunc("GET /v1/models", s.models)
	mux.HandleFunc("GET /v1/models/{id}", s.model)
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("GET /v1/fmoe/stats", s.stats)
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /ui/{file}", s.asset)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "invalid_request_error", "not_found",
			fmt.Sprintf("no route for %s %s (GET / for the chat page, POST /v1/chat/completions, GET /v1/models, GET /v1/fmoe/stats, GET /health)", r.Method, r.URL.Path))
	})
	if s.opts.APIKey == "" {
		return mux
	}
	want := sha256.Sum256([]byte(s.opts.APIKey))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if public(r) {
			mux.ServeHTTP(w, r)
			return
		}
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// Hashes compare in constant time whatever the lengths.
		got := sha256.Sum256([]byte(strings.TrimSpace(key)))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fmoe"`)
			writeError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key",
				"a valid API key is required: send it as \"Authorization: Bearer KEY\"")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// public reports whether r needs no API key: GET /health, for load
// balancers and probes, and the chat page and its files, which ask the
// user for the key. None of them tells anything secret.
func public(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	p := r.URL.Path
	return p == "/health" || p == "/" || strings.HasPrefix(p, "/ui/")
}

func (s *Server) modelObject() map[string]any {
	return map[string]any{"id": s.opts.Name, "object": "model", "created": s.created, "owned_by": "fmoe"}
}

func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []any{s.modelObject()}})
}

func (s *Server) model(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("id") != s.opts.Name {
		writeError(w, http.StatusNotFound, "invalid_request_error", "model_not_found",
			fmt.Sprintf("the model %q does not exist; this server serves %q", r.PathValue("id"), s.opts.Name))
		return
	}
	writeJSON(w, http.StatusOK, s.modelObject())
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "ok", "model": s.opts.Name, "generating": s.busy.Load(), "queued": s.waiting.Load(),
	})
}

// errBusy is returned by acquire when the queue is full, errClosing when
// the server is shutting down.
var (
	errBusy    = errors.New("busy")
	errClosing = errors.New("the server is shutting down")
)

// acquire admits a request and waits for the model. It fails at once when
// the queue is full or the server is shutting down, and when the client
// goes away (or the shutdown's grace period ends) while waiting.
func (s *Server) acquire(r *http.Request) (release func(), err error) {
	if !s.enter() {
		return nil, errClosing
	}
	select {
	case s.admit <- struct{}{}:
	default:
		s.leave()
		return nil, errBusy
	}
	s.waiting.Add(1)
	select {
	case s.run <- struct{}{}:
		s.waiting.Add(-1)
		s.busy.Store(true)
		return func() {
			s.busy.Store(false)
			<-s.run
			<-s.admit
			s.leave()
		}, nil
	case <-r.Context().Done():
		err = r.Context().Err()
	case <-s.base.Done():
		err = errClosing
	}
	s.waiting.Add(-1)
	<-s.admit
	s.leave()
	return nil, err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, typ, code, msg string) {
	writeJSON(w, status, newAPIError(typ, code, msg))
}

func badRequest(w http.ResponseWriter, format string, args ...any) {
	writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_request", fmt.Sprintf(format, args...))
}
