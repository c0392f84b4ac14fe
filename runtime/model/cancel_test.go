package model

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestForwardContextCancels: a cancel during a layer stops the forward
// before the next layer, with ctx.Err(); the session then refuses to go on
// until Reset (or Restore), after which it computes what a fresh one does.
func TestForwardContextCancels(t *testing.T) {
	m := open(t, "mlx-4bit", 0, 0, Options{PrefillChunk: 4})
	ids := []int{1, 5, 9, 13, 2, 7, 11, 3, 8, 4}
	want := forwardAll(t, m, ids)
	s, _ := m.NewSession()
	for _, c := range []struct {
		name  string
		after string // the capture that cancels
		runs  int    // layer captures seen
	}{
		{"in the first chunk", "layer00", 1},
		{"between chunks", "final_norm", len(m.layers)},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		n := 0
		s.Capture = func(name string, T int, h []float32) {
			if strings.HasPrefix(name, "layer") {
				n++
			}
			if name == c.after {
				cancel()
			}
		}
		_, err := s.ForwardContext(ctx, ids)
		cancel()
		if !errors.Is(err, context.Canceled) || n != c.runs {
			t.Fatalf("%s: %v after %d layers, want Canceled after %d", c.name, err, n, c.runs)
		}
		s.Capture = nil
		if _, err := s.Forward([]int{1}); err == nil || !strings.Contains(err.Error(), "Reset") {
			t.Fatalf("%s: a cancelled session went on: %v", c.name, err)
		}
		if err := s.Reset(); err != nil {
			t.Fatal(err)
		}
		got, err := s.ForwardAllContext(context.Background(), ids)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("%s: after Reset the logits differ (%v)", c.name, err)
		}
		s.Reset()
	}
}

// TestCloseWaitsForForward: Close waits for a forward pass in flight (it
// must not unmap weights under it), and every pass after Close fails
// cleanly instead of reading unmapped memory.
func TestCloseWaitsForForward(t *testing.T) {
	m, err := Open(packed(t, "mlx-4bit", 0), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := m.NewSession()
	inLayer, release := make(chan struct{}), make(chan struct{})
	s.Capture = func(name string, T int, h []float32) {
		if name == "layer00" {
			close(inLayer)
			<-release
		}
	}
	fwd := make(chan error, 1)
	go func() { _, err := s.Forward([]int{1, 5, 9}); fwd <- err }()
	<-inLayer
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a forward pass was running")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-fwd; err != nil {
		t.Fatalf("the pass Close waited for: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	s.Capture = nil
	if _, err := s.Forward([]int{1}); !errors.Is(err, errClosed) {
		t.Errorf("Forward after Close: %v", err)
	}
	if _, err := s.Snapshot(); !errors.Is(err, errClosed) {
		t.Errorf("Snapshot after Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}
