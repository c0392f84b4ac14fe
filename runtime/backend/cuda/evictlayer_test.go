//go:build linux && cgo

package cuda

import (
	"math/rand/v2"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// TestEvictLayer (FMOE_CUDA_EVICT=layer): a victim of a layer other than
// the one whose reads were queued last is refilled after that layer's end
// of reads, one of the current layer after an event recorded at eviction;
// a kernel queued on the victim before its eviction still computes the
// victim (its output read only after the refill was queued), and the
// refilled expert computes itself. The cache's own tests run with it too
// (TestExpertCacheEvictionEvictLayer).
func TestEvictLayer(t *testing.T) {
	t.Setenv("FMOE_CUDA_EVICT", "layer")
	be := newOrSkip(t)
	defer be.Close()
	if !be.lreads.on {
		t.Fatal("FMOE_CUDA_EVICT=layer: the layer bookkeeping is off")
	}
	ref := cpu.New(cpu.Options{})
	const R, C = 256, 1024
	rng := rand.New(rand.NewPCG(7, 8))
	w := make([]backend.Weight, 5)
	for i := range w {
		w[i], _ = backendtest.RandomWeight(rng, backend.Q4, R, C, 64)
	}
	_, _, one := layout(w[0])
	x, xb := lruWithInput(t, be, int64(2*one), C, rng)
	// queue binds expert e of layer l and queues its matvec, releasing it
	// (its layer's read); the output is read later.
	queue := func(l, e int) backend.Buffer {
		t.Helper()
		ts, err := be.BindExpert(l, e, w[e:e+1])
		if err != nil {
			t.Fatal(err)
		}
		yb, _ := be.Alloc(R)
		if err := be.MatMul(yb, ts[0], xb, 1); err != nil {
			t.Fatal(err)
		}
		if err := be.Release(ts[0]); err != nil {
			t.Fatal(err)
		}
		return yb
	}
	check := func(e int, yb backend.Buffer) {
		t.Helper()
		y := make([]float32, R)
		if err := be.Read(y, yb); err != nil {
			t.Fatal(err)
		}
		if err := relErr(y, runMatMul(t, ref, w[e], x, 1, R)); !(err < 2e-5) {
			t.Fatalf("expert %d: relative error %.3g", e, err)
		}
	}
	slotOf := func(l, e int) *slot {
		t.Helper()
		en := be.cache.m[ExpertKey{l, e}]
		if en == nil || len(en.slots) != 1 {
			t.Fatalf("layer %d expert %d: not held in one slot", l, e)
		}
		return en.slots[0]
	}
	y0 := queue(0, 0)
	y1 := queue(1, 1) // the reads move to layer 1: layer 0's end recorded
	if be.lreads.cur != 1 || len(be.lreads.ends) < 1 || be.lreads.ends[0] == nil {
		t.Fatalf("after reads of layers 0 and 1: current %d, ends %v", be.lreads.cur, be.lreads.ends)
	}
	y2 := queue(2, 2) // evicts layer 0's expert: its refill waits for layer 0's end
	if s := slotOf(2, 2); s.freeOn != be.lreads.ends[0] {
		t.Fatal("a victim of a layer left was refilled after an event of its own, not its layer's end of reads")
	}
	y3 := queue(2, 3) // evicts layer 1's expert (left when layer 2's reads came)
	if s := slotOf(2, 3); s.freeOn != be.lreads.ends[1] {
		t.Fatal("the second victim was not refilled after layer 1's end of reads")
	}
	y4 := queue(2, 4) // evicts layer 2's expert 2: the current layer, today's event
	if s := slotOf(2, 4); s.freeOn != s.free {
		t.Fatal("a victim of the current layer was refilled after its layer's end, not an event recorded at eviction")
	}
	for e, yb := range []backend.Buffer{y0, y1, y2, y3, y4} {
		check(e, yb)
	}
}

// TestExpertCacheEvictionEvictLayer is TestExpertCacheEviction and
// TestExpertCacheDrop with FMOE_CUDA_EVICT=layer.
func TestExpertCacheEvictionEvictLayer(t *testing.T) {
	t.Setenv("FMOE_CUDA_EVICT", "layer")
	TestExpertCacheEviction(t)
	TestExpertCacheDrop(t)
}
