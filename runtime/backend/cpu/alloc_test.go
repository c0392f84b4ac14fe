package cpu

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// The decode step runs thousands of ops per token: after the first call
// (which sizes the backend's scratch) none of them may allocate.
func TestOpsDoNotAllocate(t *testing.T) {
	for _, p := range []Path{PathAuto, PathGo, PathReference} {
		be := New(Options{Path: p, Threads: 2})
		rng := rand.New(rand.NewPCG(3, 4))
		for _, f := range []backend.Format{backend.Q2, backend.Q4, backend.Q8, backend.BF16, backend.F16, backend.F32} {
			// 512×1024 is above minParallelBytes for every format, so the
			// pool is used.
			w, _ := backendtest.RandomWeight(rng, f, 512, 1024, 64)
			wt, err := be.Bind(w)
			if err != nil {
				t.Fatal(err)
			}
			x, _ := be.Alloc(1024)
			y, _ := be.Alloc(512)
			noAllocs(t, fmt.Sprintf("%v/%v matmul", p, f), func() error { return be.MatMul(y, wt, x, 1) })
		}
		be.Close()
	}

	be := New(Options{Threads: 2})
	defer be.Close()
	const H, KV, D, pos = 8, 2, 64, 200
	q, _ := be.Alloc(H * D)
	k, _ := be.Alloc((pos + 1) * KV * D)
	v, _ := be.Alloc((pos + 1) * KV * D)
	out, _ := be.Alloc(H * D)
	ql := backend.Packed(1, H, D)
	noAllocs(t, "attention", func() error { return be.Attention(out, q, nil, ql, ql, k, v, KV, pos) })
	noAllocs(t, "rope", func() error { return be.Rope(q, ql, 32, 1e7, pos) })

	s := backend.DeltaShape{T: 1, Hk: 4, Dk: 64, Hv: 8, Dv: 64, Eps: 1e-6}
	qkv, _ := be.Alloc(s.QKVLen())
	a, _ := be.Alloc(s.Hv)
	b, _ := be.Alloc(s.Hv)
	st, _ := be.Alloc(s.StateLen())
	yd, _ := be.Alloc(s.Hv * s.Dv)
	al, _ := be.Register(backendtest.DenseF32(1, s.Hv, make([]float32, s.Hv)))
	dt, _ := be.Register(backendtest.DenseF32(1, s.Hv, make([]float32, s.Hv)))
	noAllocs(t, "deltanet", func() error { return be.DeltaNet(yd, qkv, a, b, al, dt, st, s) })

	const C, K = 256, 4
	cw, _ := be.Register(backendtest.DenseF32(C, K, make([]float32, C*K)))
	cs, _ := be.Alloc((K - 1) * C)
	noAllocs(t, "conv1d", func() error { return be.Conv1D(qkv, qkv, cw, cs, 1) })
}

// A routed expert is bound and released three times per layer per token:
// once warm, the pair allocates nothing, and a released tensor is still
// refused after a quarantine's worth of further binds and releases.
func TestBindDoesNotAllocate(t *testing.T) {
	be := New(Options{Threads: 1})
	defer be.Close()
	w, _ := backendtest.RandomWeight(rand.New(rand.NewPCG(1, 2)), backend.Q4, 64, 256, 64)
	x, _ := be.Alloc(256)
	y, _ := be.Alloc(64)
	stale, _ := be.Bind(w)
	if err := be.Release(stale); err != nil {
		t.Fatal(err)
	}
	for range quarantine {
		wt, err := be.Bind(w)
		if err != nil {
			t.Fatal(err)
		}
		if wt == stale {
			t.Fatal("a released tensor was re-used within the quarantine")
		}
		if err := be.Release(wt); err != nil {
			t.Fatal(err)
		}
	}
	if err := be.MatMul(y, stale, x, 1); err == nil {
		t.Error("MatMul with a tensor released a quarantine ago succeeded")
	}
	noAllocs(t, "bind+matmul+release", func() error {
		wt, err := be.Bind(w)
		if err != nil {
			return err
		}
		if err := be.MatMul(y, wt, x, 1); err != nil {
			return err
		}
		return be.Release(wt)
	})
	wt, _ := be.Bind(w)
	if err := be.Release(wt); err != nil {
		t.Fatal(err)
	}
	if err := be.MatMul(y, wt, x, 1); err == nil {
		t.Error("MatMul with a released tensor succeeded")
	}
	if err := be.Release(wt); err == nil {
		t.Error("a second Release succeeded")
	}
}

func noAllocs(t *testing.T, what string, op func() error) {
	t.Helper()
	if err := op(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if n := testing.AllocsPerRun(20, func() { _ = op() }); n != 0 {
		t.Errorf("%s: %v allocations per call, want 0", what, n)
	}
}

// Close stops the workers, and the backend still computes afterwards
// (on the calling goroutine).
func TestPoolClose(t *testing.T) {
	for _, poll := range []time.Duration{0, 50 * time.Millisecond} {
		for _, futex := range []bool{false, true} {
			t.Run(fmt.Sprintf("poll=%v/futex=%v", poll, futex), func(t *testing.T) { testPoolClose(t, poll, futex) })
		}
	}
}

// testPoolClose: ops compute before and after Close, whose workers exit,
// polling ones (Options.Poll) and futex sleepers (Options.FutexWake) too.
func testPoolClose(t *testing.T, poll time.Duration, futex bool) {
	be := New(Options{Threads: 4, Poll: poll, FutexWake: futex})
	p := be.pool
	if got := p.live.Load(); got != 3 {
		t.Errorf("New(Threads 4) started %d workers, want 3", got)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	w, vals := backendtest.RandomWeight(rng, backend.Q4, 256, 1024, 64)
	wt, _ := be.Register(w)
	x := make([]float32, 1024)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	want := make([]float32, 256)
	for r := range want {
		var s float64
		for j, v := range x {
			s += vals[r*1024+j] * float64(v)
		}
		want[r] = float32(s)
	}
	xb, _ := be.Alloc(1024)
	yb, _ := be.Alloc(256)
	if err := be.Write(xb, x); err != nil {
		t.Fatal(err)
	}
	for _, phase := range []string{"open", "closed"} {
		if phase == "closed" {
			if err := be.Close(); err != nil {
				t.Fatal(err)
			}
			if err := be.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			waitWorkers(t, p)
		}
		if err := be.MatMul(yb, wt, xb, 1); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, 256)
		be.Read(got, yb)
		for r := range got {
			if d := got[r] - want[r]; d > 1e-3 || d < -1e-3 {
				t.Fatalf("%s: row %d = %v, want %v", phase, r, got[r], want[r])
			}
		}
	}
}

func waitWorkers(t *testing.T, p *pool) {
	t.Helper()
	for i := 0; i < 100 && p.live.Load() > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.live.Load(); n > 0 {
		t.Errorf("%d workers still running after Close", n)
	}
}

// A backend dropped without Close has its workers stopped by the
// garbage collector.
func TestPoolCleanup(t *testing.T) {
	p := New(Options{Threads: 3}).pool
	for i := 0; i < 50 && p.live.Load() > 0; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.live.Load(); n > 0 {
		t.Errorf("%d workers still running after the backend was collected", n)
	}
}

// Views are re-used: asking again for a recent view allocates nothing, and
// every view, re-used or new, addresses its own range of the parent.
func TestViews(t *testing.T) {
	be := New(Options{Threads: 1})
	defer be.Close()
	const n = 100
	p, _ := be.Alloc(n)
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = float32(i)
	}
	be.Write(p, vals)
	noAllocs(t, "view", func() error { _, err := be.View(p, 3, 5); return err })
	// More distinct views than the cache holds, twice over.
	for round := 0; round < 2; round++ {
		for off := 0; off < 40; off++ {
			v, err := be.View(p, off, 2+off%3)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float32, v.Len())
			be.Read(got, v)
			if v.Len() != 2+off%3 || got[0] != float32(off) || got[len(got)-1] != float32(off+len(got)-1) {
				t.Fatalf("view(%d, %d) = %v", off, 2+off%3, got)
			}
		}
	}
}
