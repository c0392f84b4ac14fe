package model

import (
	"fmt"
	"runtime/debug"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// limited wraps a backend and counts the bytes of the buffers allocated
// and not yet freed, refusing an allocation past limit as a full device
// would. The garbage collector is not counted on: only Free returns bytes.
type limited struct {
	backend.Backend
	live  map[backend.Buffer]int
	bytes int
	peak  int
	limit int
}

func (l *limited) Alloc(n int) (backend.Buffer, error) {
	if l.limit > 0 && l.bytes+4*n > l.limit {
		return nil, fmt.Errorf("limited: %d bytes held, %d more would pass the limit of %d", l.bytes, 4*n, l.limit)
	}
	b, err := l.Backend.Alloc(n)
	if err == nil {
		l.live[b] = 4 * n
		l.bytes += 4 * n
		l.peak = max(l.peak, l.bytes)
	}
	return b, err
}

func (l *limited) Free(b backend.Buffer) error {
	l.bytes -= l.live[b]
	delete(l.live, b)
	return l.Backend.Free(b)
}

// TestLongContextFreesKV grows the KV caches of a session nine times (256
// to 65,536 positions) by decoding at ever later positions, with the
// garbage collector off and device memory capped at what the final caches
// plus one growth step need. Without explicit frees the old caches (as
// large again as the final ones) would not fit. With FMOE_TEST_BACKEND=cuda
// it runs on the GPU.
func TestLongContextFreesKV(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	inner := testBackend(t)
	if inner == nil {
		inner = cpu.New(cpu.Options{})
	}
	lb := &limited{Backend: inner, live: map[backend.Buffer]int{}}
	const ctx = 1 << 16
	m := open(t, "hf", 16, 0, Options{Backend: lb, MaxContext: ctx})
	c := &m.Config
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	full := 0
	for _, L := range m.layers {
		if L.full {
			full++
		}
	}
	kvBytes := func(cap int) int { return full * 2 * cap * c.NumKeyValueHeads * c.HeadDim * 4 }
	if _, err := s.Forward([]int{1}); err != nil {
		t.Fatal(err)
	}
	base := lb.bytes - kvBytes(256)
	// Room for the final caches plus the transient of their last growth
	// (old and new caches of one layer at once), nothing more.
	lb.limit = base + kvBytes(ctx) + kvBytes(ctx/2)/full + 4096
	grows := 0
	for pos := 256; pos < ctx; pos *= 2 {
		s.pos = pos // skip ahead: the rows between hold zeros, which attention reads harmlessly
		if _, err := s.Forward([]int{2}); err != nil {
			t.Fatalf("decode at position %d: %v", pos, err)
		}
		grows++
	}
	if grows != 8 || s.layers[3].cap != ctx {
		t.Fatalf("%d grows to a capacity of %d, want 8 to %d", grows, s.layers[3].cap, ctx)
	}
	if want := base + kvBytes(ctx); lb.bytes != want {
		t.Fatalf("%d bytes held after growing, want %d (base %d + final caches %d)", lb.bytes, want, base, kvBytes(ctx))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if lb.bytes != 0 {
		t.Fatalf("%d bytes still held after Session.Close", lb.bytes)
	}
	if _, err := s.Forward([]int{3}); err == nil {
		t.Fatal("Forward on a closed session succeeded")
	}
}
