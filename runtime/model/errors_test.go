package model

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
)

func TestOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing"), Options{}); err == nil {
		t.Fatal("Open of a missing directory succeeded")
	}
	dir := packed(t, "hf", 16)
	if _, err := Open(dir, Options{ExpertsPerToken: 17}); err == nil || !strings.Contains(err.Error(), "experts per token") {
		t.Fatalf("K=17 of 16 experts: %v", err)
	}
	// A truncated expert file is refused at Open, not at the first token.
	bad := t.TempDir()
	copyDir(t, dir, bad)
	f := filepath.Join(bad, "packed_experts", "layer_03.bin")
	st, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f, st.Size()-1); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(bad, Options{}); err == nil {
		t.Fatal("Open with a truncated expert file succeeded")
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestForwardErrors(t *testing.T) {
	m := open(t, "hf", 16, 0, Options{MaxContext: 8})
	s, _ := m.NewSession()
	if _, err := s.Forward(nil); err == nil {
		t.Error("forward of no tokens succeeded")
	}
	if _, err := s.Forward([]int{2048}); err == nil {
		t.Error("token id = vocab size accepted")
	}
	if _, err := s.Forward([]int{-1}); err == nil {
		t.Error("negative token id accepted")
	}
	if _, err := s.Forward(make([]int, 9)); err == nil {
		t.Error("9 tokens in a context of 8 accepted")
	}
	if _, err := s.Forward(make([]int, 8)); err != nil {
		t.Errorf("8 tokens in a context of 8: %v", err)
	}
	if _, err := s.Forward([]int{1}); err == nil {
		t.Error("a 9th token in a context of 8 accepted")
	}
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Forward([]int{1}); err != nil {
		t.Errorf("after Reset: %v", err)
	}
}

// TestExpertStreamErrors: a failing read or compute stops the stream with
// its error, and every buffer returns to the pool (the next stream does not
// deadlock).
func TestExpertStreamErrors(t *testing.T) {
	m := open(t, "hf", 16, 0, Options{ReadParallel: 2})
	r := m.experts
	ok := func(int, *[3]backend.Weight) error { return nil }
	if err := r.stream(0, []int{1, 2, 99, 3, 4, 5}, ok); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("stream with expert 99 of 16: %v", err)
	}
	boom := errors.New("boom")
	n := 0
	err := r.stream(1, []int{0, 1, 2, 3, 4, 5, 6, 7}, func(int, *[3]backend.Weight) error {
		n++
		if n == 2 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("compute error: got %v", err)
	}
	for i := 0; i < 3; i++ {
		seen := map[int]bool{}
		if err := r.stream(2, []int{0, 5, 9, 15}, func(id int, w *[3]backend.Weight) error {
			seen[id] = true
			if w[0].Rows != m.Config.MoeIntermediateSize || w[2].Cols != m.Config.MoeIntermediateSize {
				t.Errorf("expert %d: shapes %dx%d, %dx%d", id, w[0].Rows, w[0].Cols, w[2].Rows, w[2].Cols)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 4 {
			t.Fatalf("saw experts %v", seen)
		}
	}
	if len(r.pool) != cap(r.pool) {
		t.Fatalf("%d of %d buffers back in the pool", len(r.pool), cap(r.pool))
	}
	if err := r.stream(len(r.files), []int{0}, ok); err == nil {
		t.Fatal("stream of a layer past the end succeeded")
	}
}

// TestExpertReadersStop: the expert readers, started at open, serve many
// streams and end with Close (no goroutine left behind).
func TestExpertReadersStop(t *testing.T) {
	dir := packed(t, "hf", 16)
	before := runtime.NumGoroutine()
	m, err := Open(dir, Options{ReadParallel: 6})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := m.experts.stream(i%m.Config.NumHiddenLayers, []int{0, 3, 7, 11}, func(int, *[3]backend.Weight) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close, %d before Open", n, before)
	}
}
