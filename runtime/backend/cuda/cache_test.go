//go:build linux && cgo

package cuda

import (
	"math/rand/v2"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// lruWithInput gives be an LRU GPU tier of budget bytes and returns a
// random input of C values, on the host and uploaded.
func lruWithInput(t *testing.T, be *Backend, budget int64, C int, rng *rand.Rand) ([]float32, backend.Buffer) {
	t.Helper()
	lru, _ := NewPolicy("lru", 0)
	be.SetCachePolicy(lru)
	if err := be.SetExpertCache(budget, 1); err != nil {
		t.Fatal(err)
	}
	x := make([]float32, C)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	xb, _ := be.Alloc(C)
	if err := be.Write(xb, x); err != nil {
		t.Fatal(err)
	}
	return x, xb
}

// tensorMatVec is wt·x (R rows) for a bound tensor, read back.
func tensorMatVec(t *testing.T, be *Backend, wt backend.Tensor, xb backend.Buffer, R int) []float32 {
	t.Helper()
	yb, _ := be.Alloc(R)
	if err := be.MatMul(yb, wt, xb, 1); err != nil {
		t.Fatal(err)
	}
	y := make([]float32, R)
	if err := be.Read(y, yb); err != nil {
		t.Fatal(err)
	}
	return y
}

// TestExpertCacheEviction drives the GPU tier with a budget of three
// experts: misses fill it, a hit computes bit for bit what its miss did,
// LRU evicts the least recent expert not in use, an expert in use is never
// evicted (the bind goes uncached instead), and dropping the tier while an
// expert is in use is refused.
func TestExpertCacheEviction(t *testing.T) {
	be := newOrSkip(t)
	defer be.Close()
	ref := cpu.New(cpu.Options{})
	const R, C = 96, 512
	rng := rand.New(rand.NewPCG(5, 6))
	experts := make([][]backend.Weight, 6)
	for i := range experts {
		for j := 0; j < 3; j++ {
			w, _ := backendtest.RandomWeight(rng, backend.Q4, R, C, 64)
			experts[i] = append(experts[i], w)
		}
	}
	_, _, one := layout(experts[0][0])
	x, xb := lruWithInput(t, be, int64(3*3*one), C, rng)
	// run computes the three projections of expert e (bound by bind) and
	// returns the outputs; release false keeps the tensors in use.
	run := func(e int, ts []backend.Tensor, release bool) [][]float32 {
		t.Helper()
		var out [][]float32
		for j, wt := range ts {
			y := tensorMatVec(t, be, wt, xb, R)
			want := runMatMul(t, ref, experts[e][j], x, 1, R)
			if err := relErr(y, want); !(err < 2e-5) {
				t.Fatalf("expert %d projection %d: relative error %.3g", e, j, err)
			}
			out = append(out, y)
			if release {
				if err := be.Release(wt); err != nil {
					t.Fatal(err)
				}
			}
		}
		return out
	}
	miss := func(e int, release bool) ([][]float32, []backend.Tensor) {
		t.Helper()
		ts, err := be.BindExpert(0, e, experts[e])
		if err != nil {
			t.Fatal(err)
		}
		return run(e, ts, release), ts
	}
	held := func() map[int]bool {
		h := map[int]bool{}
		for e := range experts {
			if _, ok := be.cache.m[ExpertKey{0, e}]; ok {
				h[e] = true
			}
		}
		return h
	}
	first := map[int][][]float32{}
	for e := 0; e < 3; e++ {
		first[e], _ = miss(e, true)
	}
	if h := held(); len(h) != 3 {
		t.Fatalf("after three misses the tier holds %v", h)
	}
	ts, ok := be.CachedExpert(0, 0) // 0 becomes the most recent
	if !ok {
		t.Fatal("expert 0 not cached")
	}
	if got := run(0, ts, true); firstDiffRows(got, first[0]) {
		t.Fatal("a hit computed other values than its miss")
	}
	if ev := be.Evicted(nil); len(ev) != 0 {
		t.Fatalf("evictions %v before the tier was full", ev)
	}
	miss(3, true) // evicts 1, the least recent
	if h := held(); h[1] || !h[0] || !h[2] || !h[3] {
		t.Fatalf("after the fourth miss the tier holds %v, want 0, 2, 3", h)
	}
	// The eviction is reported once, for a host tier to take in.
	if ev := be.Evicted(nil); len(ev) != 1 || ev[0] != [2]int{0, 1} {
		t.Fatalf("evictions reported %v, want [[0 1]]", ev)
	}
	if ev := be.Evicted(nil); len(ev) != 0 {
		t.Fatalf("evictions reported again: %v", ev)
	}
	// Keep 2 and 3 in use (3 via a hit); then two misses may evict only 0
	// and then what they brought themselves.
	ts2, _ := be.CachedExpert(0, 2)
	ts3, _ := be.CachedExpert(0, 3)
	if err := be.SetExpertCache(0, 1); err == nil {
		t.Fatal("the tier was dropped while experts were in use")
	}
	miss(4, true)
	_, ts5 := miss(5, false)
	if h := held(); !h[2] || !h[3] || len(h) != 3 {
		t.Fatalf("experts in use were evicted: the tier holds %v", h)
	}
	miss(1, true) // the three held are in use: bound uncached
	if h := held(); h[1] {
		t.Fatalf("expert 1 was cached with every entry in use: %v", h)
	}
	for _, t2 := range [][]backend.Tensor{ts2, ts3, ts5} {
		for _, x := range t2 {
			if err := be.Release(x); err != nil {
				t.Fatal(err)
			}
		}
	}
	budget, used, n := be.ExpertCacheStats()
	if n != 3 || used > budget {
		t.Fatalf("tier: %d entries, %d of %d bytes", n, used, budget)
	}
	ts, _ = be.CachedExpert(0, 2)
	if got := run(2, ts, true); firstDiffRows(got, first[2]) {
		t.Fatal("a hit after evictions computed other values than the first miss")
	}
	if err := be.SetExpertCache(0, 1); err != nil {
		t.Fatal(err)
	}
	if _, ok := be.CachedExpert(0, 2); ok {
		t.Fatal("a hit with the tier off")
	}
}

// TestExpertCacheDrop: DropExpert (a checksum failed after the bind)
// evicts an entry not in use; one in use leaves the tier at once (no
// later hit) while its tensors still compute the expert, and its slots are
// freed at the last Release; the budget it held is free again; dropping an
// expert the tier does not hold does nothing.
func TestExpertCacheDrop(t *testing.T) {
	be := newOrSkip(t)
	defer be.Close()
	const R, C = 96, 512
	rng := rand.New(rand.NewPCG(7, 8))
	var ws [2][]backend.Weight
	for i := range ws {
		for j := 0; j < 3; j++ {
			w, _ := backendtest.RandomWeight(rng, backend.Q4, R, C, 64)
			ws[i] = append(ws[i], w)
		}
	}
	if err := be.SetExpertCache(1<<30, 1); err != nil {
		t.Fatal(err)
	}
	release := func(ts []backend.Tensor) {
		t.Helper()
		for _, x := range ts {
			if err := be.Release(x); err != nil {
				t.Fatal(err)
			}
		}
	}
	ts, err := be.BindExpert(0, 0, ws[0])
	if err != nil {
		t.Fatal(err)
	}
	release(ts)
	in, err := be.BindExpert(0, 1, ws[1]) // kept in use
	if err != nil {
		t.Fatal(err)
	}
	if _, used, n := be.ExpertCacheStats(); n != 2 || used == 0 {
		t.Fatalf("after two binds: %d entries, %d bytes", n, used)
	}
	for _, id := range []int{0, 1, 2} {
		if err := be.DropExpert(0, id); err != nil {
			t.Fatalf("drop expert %d: %v", id, err)
		}
	}
	if _, used, n := be.ExpertCacheStats(); n != 0 || used != 0 {
		t.Fatalf("after the drops: %d entries, %d bytes", n, used)
	}
	// A dropped expert failed its checksum: no host tier may take it in.
	if ev := be.Evicted(nil); len(ev) != 0 {
		t.Fatalf("drops reported as evictions: %v", ev)
	}
	for _, id := range []int{0, 1} {
		if _, ok := be.CachedExpert(0, id); ok {
			t.Fatalf("a dropped expert %d was served", id)
		}
	}
	// The dropped entry's tensors still compute its expert until released.
	x := make([]float32, C)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	xb, _ := be.Alloc(C)
	yb, _ := be.Alloc(R)
	if err := be.Write(xb, x); err != nil {
		t.Fatal(err)
	}
	if err := be.MatMul(yb, in[0], xb, 1); err != nil {
		t.Fatal(err)
	}
	y := make([]float32, R)
	if err := be.Read(y, yb); err != nil {
		t.Fatal(err)
	}
	if e := relErr(y, runMatMul(t, cpu.New(cpu.Options{}), ws[1][0], x, 1, R)); !(e < 2e-5) {
		t.Fatalf("a dropped entry's tensor in use: relative error %.3g", e)
	}
	release(in)
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := be.SetExpertCache(0, 1); err != nil {
		t.Fatal(err)
	}
}

func firstDiffRows(a, b [][]float32) bool {
	for i := range a {
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				return true
			}
		}
	}
	return false
}

// TestMatVecBatch: one batched launch computes, job by job, bit for bit
// what each job's own MatMul does, for every format; a job of another
// shape is refused.
func TestMatVecBatch(t *testing.T) {
	be := newOrSkip(t)
	defer be.Close()
	rng := rand.New(rand.NewPCG(8, 9))
	for _, f := range []backend.Format{backend.Q2, backend.Q4, backend.Q8, backend.BF16, backend.F16, backend.F32} {
		const R, C, n = 256, 1024, 7
		var ys, xs, ref []backend.Buffer
		var ws []backend.Tensor
		for i := 0; i < n; i++ {
			w, _ := backendtest.RandomWeight(rng, f, R, C, 64)
			wt, err := be.Register(w)
			if err != nil {
				t.Fatal(err)
			}
			x := make([]float32, C)
			for j := range x {
				x[j] = float32(rng.NormFloat64())
			}
			xb, _ := be.Alloc(C)
			yb, _ := be.Alloc(R)
			rb, _ := be.Alloc(R)
			if err := be.Write(xb, x); err != nil {
				t.Fatal(err)
			}
			if err := be.MatMul(rb, wt, xb, 1); err != nil {
				t.Fatal(err)
			}
			ys, xs, ws, ref = append(ys, yb), append(xs, xb), append(ws, wt), append(ref, rb)
		}
		if err := be.MatVecBatch(ys, ws, xs); err != nil {
			t.Fatalf("%v: %v", f, err)
		}
		for i := range ys {
			got, want := make([]float32, R), make([]float32, R)
			if err := be.Read(got, ys[i]); err != nil {
				t.Fatal(err)
			}
			if err := be.Read(want, ref[i]); err != nil {
				t.Fatal(err)
			}
			if firstDiffRows([][]float32{got}, [][]float32{want}) {
				t.Fatalf("%v job %d: batched result differs from its MatMul", f, i)
			}
		}
	}
	w, _ := backendtest.RandomWeight(rng, backend.Q4, 128, 1024, 64)
	odd, _ := be.Register(w)
	w2, _ := backendtest.RandomWeight(rng, backend.Q4, 256, 1024, 64)
	ok, _ := be.Register(w2)
	x, _ := be.Alloc(1024)
	y, _ := be.Alloc(256)
	if err := be.MatVecBatch([]backend.Buffer{y, y}, []backend.Tensor{ok, odd}, []backend.Buffer{x, x}); err == nil {
		t.Fatal("a batch of two shapes was accepted")
	}
}
