//go:build linux && cgo

package cuda

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// TestPrefetchExpert drives the GPU tier's prefetch with a budget of two
// experts whose bytes lie in pinned memory (one DMA, read after the call
// returns): a prefetched expert is not in the device index until its first
// use, a hit on it computes what its weights give even when the host bytes
// are overwritten once PrefetchDone has said so, a second prefetch of a
// held expert is refused, a pending entry is evictable (its eviction
// reported) but by a prefetch for its own layer while its copy runs, a spent token is refused, and the tier can be dropped with a
// prefetch in flight. TouchExpert finds a settled entry only, and pins
// nothing; SettleLanded settles a landed prefetch into the index once. Prefetches on the copy stream and on one of their
// own (Options.PrefetchStream) alike.
func TestPrefetchExpert(t *testing.T) {
	for _, own := range []bool{false, true} {
		t.Run(fmt.Sprintf("own-stream=%v", own), func(t *testing.T) { prefetchExpert(t, own) })
	}
}

func prefetchExpert(t *testing.T, ownStream bool) {
	be := newOptsOrSkip(t, Options{PrefetchStream: ownStream})
	defer be.Close()
	if (be.pcopy != nil) != ownStream {
		t.Fatalf("Options.PrefetchStream %v: a prefetch stream of its own %v", ownStream, be.pcopy != nil)
	}
	ref := cpu.New(cpu.Options{})
	const R, C = 128, 512
	rng := rand.New(rand.NewPCG(7, 8))
	experts := make([][]backend.Weight, 4)
	pinned := make([][]backend.Weight, 4)
	for i := range experts {
		for _, shape := range [][2]int{{R, C}, {R, C}, {C, R}} {
			w, _ := backendtest.RandomWeight(rng, backend.Q4, shape[0], shape[1], 64)
			experts[i] = append(experts[i], w)
			p := w
			for _, part := range []*[]byte{&p.Data, &p.Scales, &p.Biases} {
				b, err := be.HostAlloc(len(*part))
				if err != nil {
					t.Fatal(err)
				}
				defer be.HostFree(b)
				copy(b, *part)
				*part = b
			}
			pinned[i] = append(pinned[i], p)
		}
	}
	_, _, gu := layout(experts[0][0])
	_, _, dn := layout(experts[0][2])
	lru, _ := NewPolicy("lru", 0)
	be.SetCachePolicy(lru)
	if err := be.SetExpertCache(int64(2*(2*gu+dn)), 1); err != nil {
		t.Fatal(err)
	}
	indexed := func(id int) bool {
		li := be.idx.layers[0]
		return li != nil && id < len(li.held) && li.held[id]
	}
	// check computes expert e's three projections from the tier and
	// compares them with the CPU on the original weights.
	check := func(e int) {
		t.Helper()
		ts, ok := be.CachedExpert(0, e)
		if !ok {
			t.Fatalf("expert %d not in the tier", e)
		}
		for j, wt := range ts {
			rows, cols := R, C
			if j == 2 {
				rows, cols = C, R
			}
			x := make([]float32, cols)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			xb, _ := be.Alloc(cols)
			yb, _ := be.Alloc(rows)
			y := make([]float32, rows)
			if err := be.Write(xb, x); err != nil {
				t.Fatal(err)
			}
			if err := be.MatMul(yb, wt, xb, 1); err != nil {
				t.Fatal(err)
			}
			if err := be.Read(y, yb); err != nil {
				t.Fatal(err)
			}
			if err := relErr(y, runMatMul(t, ref, experts[e][j], x, 1, rows)); !(err < 2e-5) {
				t.Fatalf("expert %d projection %d from a prefetch: relative error %.3g", e, j, err)
			}
			if err := be.Release(wt); err != nil {
				t.Fatal(err)
			}
		}
	}
	tok0, ok, err := be.PrefetchExpert(0, 0, pinned[0])
	if err != nil || !ok {
		t.Fatalf("prefetch of expert 0: ok %v, %v", ok, err)
	}
	if indexed(0) {
		t.Fatal("a pending prefetch is in the device index")
	}
	if be.TouchExpert(0, 0) || be.TouchExpert(0, 3) {
		t.Fatal("TouchExpert found a pending prefetch or an expert the tier lacks")
	}
	if _, ok, err := be.PrefetchExpert(0, 0, pinned[0]); ok || err != nil {
		t.Fatalf("a second prefetch of a held expert: ok %v, %v", ok, err)
	}
	if done, err := be.PrefetchDone(tok0, true); !done || err != nil {
		t.Fatalf("PrefetchDone(wait): %v, %v", done, err)
	}
	// Landed: settled ahead of its first use, into the device index, once.
	if ok, err := be.SettleLanded(0, 0); !ok || err != nil || !indexed(0) {
		t.Fatalf("SettleLanded of a landed prefetch: %v, %v, indexed %v", ok, err, indexed(0))
	}
	if ok, err := be.SettleLanded(0, 0); ok || err != nil {
		t.Fatalf("SettleLanded of a settled entry: %v, %v", ok, err)
	}
	if _, err := be.PrefetchDone(tok0, false); err == nil {
		t.Fatal("a spent prefetch token was accepted")
	}
	for _, w := range pinned[0] { // the caller's bytes are its own again
		for i := range w.Data {
			w.Data[i] = 0xff
		}
	}
	check(0)
	if !indexed(0) {
		t.Fatal("a used prefetch is not in the device index")
	}
	// A touch counts a use and pins nothing: the eviction of 0 below
	// would be refused if it did.
	if !be.TouchExpert(0, 0) {
		t.Fatal("TouchExpert missed a settled entry")
	}
	// 1 pending, then 2 evicts 0 (the least recent); a third prefetch for
	// layer 0 finds only its own layer's pending prefetches and is refused
	// (they are for the layer it is for); one for layer 1 evicts 1 (pending
	// for another layer, never used).
	var toks []int
	prefetch := func(l, e int) {
		t.Helper()
		tok, ok, err := be.PrefetchExpert(l, e, pinned[e])
		if err != nil || !ok {
			t.Fatalf("prefetch of layer %d expert %d: ok %v, %v", l, e, ok, err)
		}
		toks = append(toks, tok)
	}
	prefetch(0, 1)
	prefetch(0, 2)
	be.pf.inFlight = func(*centry) bool { return true } // the copies still running, as at scale
	if _, ok, err := be.PrefetchExpert(0, 3, pinned[3]); ok || err != nil {
		t.Fatalf("a prefetch that would evict its own layer's prefetches still in flight: ok %v, %v", ok, err)
	}
	prefetch(1, 3)
	be.pf.inFlight = nil
	if ev := be.Evicted(nil); len(ev) != 2 || ev[0] != [2]int{0, 0} || ev[1] != [2]int{0, 1} {
		t.Fatalf("evictions %v, want [[0 0] [0 1]]", ev)
	}
	if _, ok := be.CachedExpert(0, 1); ok {
		t.Fatal("an evicted prefetch is still a hit")
	}
	check(2)
	for _, tok := range toks {
		for {
			done, err := be.PrefetchDone(tok, false)
			if err != nil {
				t.Fatal(err)
			}
			if done {
				break
			}
		}
	}
	if _, ok, err := be.PrefetchExpert(0, 5, pinned[1]); err != nil || !ok {
		t.Fatalf("prefetch into a full tier: ok %v, %v", ok, err)
	}
	if err := be.SetExpertCache(0, 1); err != nil { // a pending entry dropped with the tier
		t.Fatal(err)
	}
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
}
