package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Timeouts bound how long one client may hold a connection or the model.
// A zero field takes its default.
type Timeouts struct {
	// ReadHeader is how long a request's headers may take (default 10s).
	ReadHeader time.Duration
	// Read is how long a whole request, body included, may take to arrive
	// (default 60s). It does not limit the reply.
	Read time.Duration
	// Idle is how long a kept-alive connection may wait for its next
	// request (default 120s).
	Idle time.Duration
	// Write is how long the client may take to accept one streamed chunk,
	// or a whole reply that is not streamed (default 30s). A generation
	// whose client stops reading is cancelled once it expires, which frees
	// the model for the next request.
	Write time.Duration
	// ShutdownGrace is how long running and queued requests may go on
	// once a shutdown begins (default 10s); then they are cancelled.
	ShutdownGrace time.Duration
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.ReadHeader, 10*time.Second)
	def(&t.Read, 60*time.Second)
	def(&t.Idle, 120*time.Second)
	def(&t.Write, 30*time.Second)
	def(&t.ShutdownGrace, 10*time.Second)
	return t
}

// enter counts a request in, unless the server is shutting down.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.active++
	return true
}

func (s *Server) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	s.checkDrained()
}

// checkDrained closes drained once nothing runs after a shutdown began.
// Called with mu held.
func (s *Server) checkDrained() {
	if s.closing && s.active == 0 && !s.drainClosed {
		s.drainClosed = true
		close(s.drained)
	}
}

// Shutdown refuses new requests (HTTP 503) and waits for the ones running
// or queued to end. When ctx ends first it cancels them: each stops within
// one layer of the model, and its client gets an error saying the server
// is shutting down. Shutdown returns once no request uses the engine, so
// the caller may close it; the error is ctx's when requests were cut off.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.checkDrained()
	s.mu.Unlock()
	select {
	case <-s.drained:
		return nil
	case <-ctx.Done():
	}
	s.stopAll()
	<-s.drained
	return ctx.Err()
}

// Serve serves the API on ln until ctx ends, then shuts down in order:
// the listener closes, requests in flight get Timeouts.ShutdownGrace to
// finish and are then cancelled, and Serve returns only once no request
// uses the engine any more, so the caller can close the model safely.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	t := s.opts.Timeouts
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		IdleTimeout:       t.Idle,
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	var err error
	select {
	case err = <-served:
		// The listener failed: nothing new comes in, so shut down as below.
	case <-ctx.Done():
	}
	grace, cancel := context.WithTimeout(context.Background(), t.ShutdownGrace)
	defer cancel()
	// hs.Shutdown closes the listener and idle connections at once and
	// then waits for busy ones; the requests it waits for end in
	// s.Shutdown (within the grace period, then by cancellation) and write
	// their last bytes under the write deadline.
	closed := make(chan error, 1)
	go func() {
		c, cancel := context.WithTimeout(context.Background(), t.ShutdownGrace+t.Write+time.Second)
		defer cancel()
		closed <- hs.Shutdown(c)
	}()
	s.Shutdown(grace)
	if <-closed != nil {
		hs.Close() // a connection still busy, e.g. a request body trickling in
	}
	if err == nil {
		err = <-served
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
