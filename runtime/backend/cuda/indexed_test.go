//go:build linux && cgo

package cuda

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// idxFixture is a backend whose expert cache holds experts of one shape,
// with the buffers of a one-token step.
type idxFixture struct {
	t          *testing.T
	be         *Backend
	rng        *rand.Rand
	H, I       int
	x          backend.Buffer
	g, u, eo   backend.Buffer
	ids, st, w backend.Buffer
}

func newIdxFixture(t *testing.T, be *Backend, seed uint64, H, I, K int) *idxFixture {
	f := &idxFixture{t: t, be: be, rng: rand.New(rand.NewPCG(seed, 3)), H: H, I: I}
	x := make([]float32, H)
	for i := range x {
		x[i] = float32(f.rng.NormFloat64())
	}
	f.x = f.put(x)
	f.g, f.u, f.eo = f.alloc(K*I), f.alloc(K*I), f.alloc(K*H)
	f.ids, f.st, f.w = f.alloc(K), f.alloc(1), f.alloc(K)
	return f
}

func (f *idxFixture) alloc(n int) backend.Buffer {
	b, err := f.be.Alloc(n)
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

func (f *idxFixture) put(v []float32) backend.Buffer {
	b := f.alloc(len(v))
	if err := f.be.Write(b, v); err != nil {
		f.t.Fatal(err)
	}
	return b
}

func (f *idxFixture) read(b backend.Buffer) []float32 {
	v := make([]float32, b.Len())
	if err := f.be.Read(v, b); err != nil {
		f.t.Fatal(err)
	}
	return v
}

// expert returns random gate, up [I, H] and down [H, I] weights.
func (f *idxFixture) expert(ft backend.Format, group int) []backend.Weight {
	gw, _ := backendtest.RandomWeight(f.rng, ft, f.I, f.H, group)
	uw, _ := backendtest.RandomWeight(f.rng, ft, f.I, f.H, group)
	dw, _ := backendtest.RandomWeight(f.rng, ft, f.H, f.I, group)
	return []backend.Weight{gw, uw, dw}
}

// keep binds ws as (layer, id) through the cache and releases the
// tensors, leaving the expert cached.
func (f *idxFixture) keep(layer, id int, ws []backend.Weight) {
	ts, err := f.be.BindExpert(layer, id, ws)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, x := range ts {
		if err := f.be.Release(x); err != nil {
			f.t.Fatal(err)
		}
	}
}

// indexed runs ExpertsIndexed for ids (status zeroed first) and returns
// eo's K rows and the status.
func (f *idxFixture) indexed(layer int, ids []float32) ([]float32, float32) {
	be, K := f.be, len(ids)
	if err := errors.Join(be.Write(f.ids, ids), be.Zero(f.st)); err != nil {
		f.t.Fatal(err)
	}
	if err := be.ExpertsIndexed(f.eo, f.g, f.u, f.x, f.ids, f.st, layer, K); err != nil {
		f.t.Fatal(err)
	}
	return f.read(f.eo)[:K*f.H], f.read(f.st)[0]
}

// batched computes the cached experts ids of layer as the host path does
// (MatVecBatch for gate and up, SwiGLU, MatVecBatch for down) and returns
// their rows.
func (f *idxFixture) batched(layer int, ids []int) []float32 {
	be, H, I, n := f.be, f.H, f.I, len(ids)
	g, u, eo := f.alloc(n*I), f.alloc(n*I), f.alloc(n*H)
	var ys, xs []backend.Buffer
	var ws, all []backend.Tensor
	view := func(b backend.Buffer, off, m int) backend.Buffer {
		v, err := be.View(b, off, m)
		if err != nil {
			f.t.Fatal(err)
		}
		return v
	}
	ts := make([][]backend.Tensor, n)
	for i, id := range ids {
		x, ok := be.CachedExpert(layer, id)
		if !ok {
			f.t.Fatalf("expert (%d, %d) is not cached", layer, id)
		}
		ts[i] = x
		all = append(all, x...)
	}
	for p := 0; p < 2; p++ {
		for i := range ids {
			ys, ws, xs = append(ys, view([]backend.Buffer{g, u}[p], i*I, I)), append(ws, ts[i][p]), append(xs, f.x)
		}
	}
	err := errors.Join(be.MatVecBatch(ys, ws, xs), be.SwiGLU(g, g, u))
	ys, ws, xs = ys[:0], ws[:0], xs[:0]
	for i := range ids {
		ys, ws, xs = append(ys, view(eo, i*H, H)), append(ws, ts[i][2]), append(xs, view(g, i*I, I))
	}
	err = errors.Join(err, be.MatVecBatch(ys, ws, xs))
	for _, x := range all {
		err = errors.Join(err, be.Release(x))
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return f.read(eo)
}

func sameBits(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// newCached opens a backend with a 1 GiB expert cache (or skips).
func newCached(t *testing.T) *Backend { return newCachedWith(t, Options{}) }

// newCachedWith is newCached with options (Options.Fold: the job tables'
// launch stages x too).
func newCachedWith(t *testing.T, o Options) *Backend {
	newOrSkip(t).Close()
	be, err := NewWithOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := be.SetExpertCache(1<<30, 1); err != nil {
		be.Close()
		t.Fatal(err)
	}
	return be
}

// idxShape is a test layer's experts: format, hidden and intermediate
// sizes, group.
type idxShape struct {
	f           backend.Format
	H, I, group int
}

// TestExpertsIndexed: the indexed experts, ids read from device memory,
// are bit for bit what MatVecBatch, SwiGLU and MatVecBatch compute on the
// same cached experts, for Q2, Q4, Q8 and BF16 (BF16 with row tails); an id
// the cache does not hold sets status 2 and leaves its row 0.
func TestExpertsIndexed(t *testing.T) {
	for _, fold := range []bool{false, true} {
		t.Run(fmt.Sprintf("fold=%v", fold), func(t *testing.T) { testExpertsIndexed(t, newCachedWith(t, Options{Fold: fold})) })
	}
}

func testExpertsIndexed(t *testing.T, be *Backend) {
	defer be.Close()
	const E, K = 6, 4
	for layer, c := range []idxShape{
		{backend.Q2, 576, 320, 64},
		{backend.Q4, 544, 288, 32},
		{backend.Q8, 528, 272, 16},
		{backend.BF16, 520, 264, 0}, // rows not multiples of 16 (a block's rows by default)
	} {
		f := newIdxFixture(t, be, uint64(layer+1), c.H, c.I, K)
		for e := 0; e < E; e++ {
			if be.LayerCached(layer, E) {
				t.Fatalf("%v: layer cached with %d of %d experts", c.f, e, E)
			}
			f.keep(layer, e, f.expert(c.f, c.group))
		}
		if !be.LayerCached(layer, E) || be.LayerCached(layer, E+1) {
			t.Fatalf("%v: LayerCached(%d) %v, LayerCached(%d) %v; want true, false", c.f, E, be.LayerCached(layer, E), E+1, be.LayerCached(layer, E+1))
		}
		ids := []int{3, 0, 5, 2}
		want := f.batched(layer, ids)
		got, st := f.indexed(layer, []float32{3, 0, 5, 2})
		if i := sameBits(got, want); i >= 0 || st != 0 {
			t.Fatalf("%v: indexed experts differ from MatVecBatch at %d (status %v)", c.f, i, st)
		}
		// 7 is past E, 1.5 not an id: misses beside hits.
		got, st = f.indexed(layer, []float32{7, 0, 1.5, 2})
		if st != 2 || sameBits(got[:f.H], make([]float32, f.H)) >= 0 || sameBits(got[2*f.H:3*f.H], make([]float32, f.H)) >= 0 {
			t.Fatalf("%v: misses: status %v, rows not zero", c.f, st)
		}
		if sameBits(got[f.H:2*f.H], want[f.H:2*f.H]) >= 0 || sameBits(got[3*f.H:], want[3*f.H:]) >= 0 {
			t.Fatalf("%v: the hits beside misses differ", c.f)
		}
	}
	// Growth: id 70 moves layer 10's index (64 entries) before any
	// ExpertsIndexed; after one, the index is fixed and id 200 stays out.
	f := newIdxFixture(t, be, 9, 544, 288, K)
	f.keep(10, 0, f.expert(backend.Q4, 32))
	f.keep(10, 70, f.expert(backend.Q4, 32))
	want := f.batched(10, []int{70, 0})
	if got, st := f.indexed(10, []float32{70, 0}); sameBits(got, want) >= 0 || st != 0 {
		t.Fatalf("after the index grew: status %v or values differ", st)
	}
	f.keep(10, 200, f.expert(backend.Q4, 32))
	ts, ok := be.CachedExpert(10, 200)
	if !ok {
		t.Fatal("expert (10, 200) not cached")
	}
	for _, x := range ts {
		if err := be.Release(x); err != nil {
			t.Fatal(err)
		}
	}
	if got, st := f.indexed(10, []float32{200}); st != 2 || sameBits(got, make([]float32, f.H)) >= 0 {
		t.Fatalf("an id past a fixed index: status %v, want 2 and a zero row", st)
	}
	for _, bad := range []struct {
		layer, K int
	}{{99, 1}, {1, 0}, {1, maxIndexedK + 1}} {
		if err := be.ExpertsIndexed(f.eo, f.g, f.u, f.x, f.ids, f.st, bad.layer, bad.K); err == nil {
			t.Errorf("ExpertsIndexed of layer %d, K=%d: no error", bad.layer, bad.K)
		}
	}
	if err := be.ExpertsIndexed(f.eo, f.g, f.u, f.x, f.ids, f.st, 1, K+1); err == nil {
		t.Error("ExpertsIndexed with buffers for K, asked K+1: no error")
	}
}

// TestExpertsIndexedShared: with a layer's shared expert registered
// (IndexShared), ExpertsIndexedShared's K routed rows are bit for bit
// ExpertsIndexed's and its row K is bit for bit MatMul, SwiGLU and MatMul of
// the shared expert, on the integer matvec's shapes (Q4, group 64) and
// matvec.h's (Q8, group 16); a shared expert of another shape is refused
// (ok false), and a layer with none registered is an error.
func TestExpertsIndexedShared(t *testing.T) {
	for _, fold := range []bool{false, true} {
		t.Run(fmt.Sprintf("fold=%v", fold), func(t *testing.T) { testExpertsIndexedShared(t, newCachedWith(t, Options{Fold: fold})) })
	}
}

func testExpertsIndexedShared(t *testing.T, be *Backend) {
	defer be.Close()
	defer func() {
		// The Q4 layer (512 wide) takes the integer matvec, so the folded
		// job tables' launch with it.
		if be.mmv.fold && be.mmv.wpsm > 0 && be.mmv.folds == 0 && !t.Failed() {
			t.Error("Options.Fold: no job tables' launch staged x")
		}
	}()
	// K=4 and the 397B's K=10 (22 gate and up jobs); the routed rows are
	// checked against MatVecBatch, which stages x by its own launch, so a
	// folded job tables' launch (jobs_stage_*) is checked against the
	// unfolded path.
	const E = 12
	for ki, ids := range [][]float32{{3, 0, 5, 2}, {3, 0, 5, 2, 11, 7, 9, 1, 6, 10}} {
		for li, c := range []idxShape{
			{backend.Q4, 512, 256, 64},
			{backend.Q8, 528, 272, 16},
		} {
			testIndexedShared(t, be, 2*ki+li, E, ids, c)
		}
	}
}

// testIndexedShared is one layer of testExpertsIndexedShared: E experts of
// shape c cached, the picks ids.
func testIndexedShared(t *testing.T, be *Backend, layer, E int, ids []float32, c idxShape) {
	t.Helper()
	K := len(ids)
	f := newIdxFixture(t, be, uint64(layer+20), c.H, c.I, K+1)
	for e := 0; e < E; e++ {
		f.keep(layer, e, f.expert(c.f, c.group))
	}
	if err := be.ExpertsIndexedShared(f.eo, f.g, f.u, f.x, f.ids, f.st, layer, K); err == nil {
		t.Fatalf("%v: ExpertsIndexedShared with no shared expert registered: no error", c.f)
	}
	var sh []backend.Tensor
	for _, w := range f.expert(c.f, c.group) {
		x, err := be.Register(w)
		if err != nil {
			t.Fatal(err)
		}
		sh = append(sh, x)
	}
	if ok, err := be.IndexShared(layer, sh[0], sh[1], sh[1]); ok || err != nil {
		t.Fatalf("%v: a down projection of the gate's shape: ok %v, err %v; want refused", c.f, ok, err)
	}
	if ok, err := be.IndexShared(layer, sh[0], sh[1], sh[2]); !ok || err != nil {
		t.Fatalf("%v: IndexShared: ok %v, err %v", c.f, ok, err)
	}
	routed, st := f.indexed(layer, ids)
	if st != 0 {
		t.Fatalf("%v K=%d: status %v", c.f, K, st)
	}
	picks := make([]int, K)
	for i, v := range ids {
		picks[i] = int(v)
	}
	if i := sameBits(routed, f.batched(layer, picks)); i >= 0 {
		t.Fatalf("%v K=%d: the indexed experts differ from MatVecBatch at %d", c.f, K, i)
	}
	if err := errors.Join(be.Write(f.ids, ids), be.Zero(f.st)); err != nil {
		t.Fatal(err)
	}
	if err := be.ExpertsIndexedShared(f.eo, f.g, f.u, f.x, f.ids, f.st, layer, K); err != nil {
		t.Fatal(err)
	}
	got := f.read(f.eo)
	if i := sameBits(got[:K*f.H], routed); i >= 0 || f.read(f.st)[0] != 0 {
		t.Fatalf("%v K=%d: the routed rows differ from ExpertsIndexed's at %d", c.f, K, i)
	}
	g, u, d := f.alloc(c.I), f.alloc(c.I), f.alloc(c.H)
	if err := errors.Join(be.MatMul(g, sh[0], f.x, 1), be.MatMul(u, sh[1], f.x, 1), be.SwiGLU(g, g, u),
		be.MatMul(d, sh[2], g, 1)); err != nil {
		t.Fatal(err)
	}
	if i := sameBits(got[K*f.H:], f.read(d)); i >= 0 {
		t.Fatalf("%v K=%d: the shared row differs from MatMul, SwiGLU, MatMul at %d", c.f, K, i)
	}
}

// TestIndexedEviction: the device index follows the cache. An evicted or
// dropped expert misses (status 2, row 0) and its layer is no longer
// cached; an expert that reuses an evicted expert's slots is computed from
// its own bytes; and kernels queued before the eviction still compute the
// evicted expert, though its slots are refilled before they are read back.
func TestIndexedEviction(t *testing.T) {
	be := newOrSkip(t)
	defer be.Close()
	const H, I, E = 512, 256, 3
	f := newIdxFixture(t, be, 21, H, I, E)
	lru, _ := NewPolicy("lru", 0)
	be.SetCachePolicy(lru)
	var exps [][]backend.Weight
	for range E + 1 {
		exps = append(exps, f.expert(backend.Q4, 64))
	}
	_, _, one := layout(exps[0][0])
	if err := be.SetExpertCache(int64(3*E*one), 1); err != nil {
		t.Fatal(err)
	}
	for e := 0; e < E; e++ {
		f.keep(0, e, exps[e])
	}
	if !be.LayerCached(0, E) {
		t.Fatal("layer 0 not cached with all its experts kept")
	}
	ref := f.batched(0, []int{0, 1, 2})
	row := func(v []float32, i int) []float32 { return v[i*H : (i+1)*H] }
	zero := make([]float32, H)

	// Queued before the eviction: expert 0 (the LRU entry) as it was.
	if err := errors.Join(be.Write(f.ids, []float32{0}), be.Zero(f.st),
		be.ExpertsIndexed(f.eo, f.g, f.u, f.x, f.ids, f.st, 0, 1)); err != nil {
		t.Fatal(err)
	}
	f.keep(1, 0, exps[E]) // evicts (0, 0); its slots take layer 1's expert
	if got := f.read(f.eo)[:H]; sameBits(got, row(ref, 0)) >= 0 {
		t.Fatal("a step queued before the eviction did not compute the evicted expert")
	}
	if be.LayerCached(0, E) {
		t.Fatal("layer 0 still cached after an eviction")
	}
	got, st := f.indexed(0, []float32{0, 1})
	if st != 2 || sameBits(row(got, 0), zero) >= 0 || sameBits(row(got, 1), row(ref, 1)) >= 0 {
		t.Fatalf("after eviction: status %v; want 2, a zero row and expert 1", st)
	}
	if got, st := f.indexed(1, []float32{0}); st != 0 || sameBits(got, f.batched(1, []int{0})) >= 0 {
		t.Fatalf("the expert in the reused slots: status %v or wrong values", st)
	}
	f.keep(0, 0, exps[0]) // back, in the slots of the LRU (layer 0, expert 1)
	if be.LayerCached(0, E) {
		t.Fatal("layer 0 cached with expert 1 evicted")
	}
	got, st = f.indexed(0, []float32{0, 2})
	if st != 0 || sameBits(row(got, 0), row(ref, 0)) >= 0 || sameBits(row(got, 1), row(ref, 2)) >= 0 {
		t.Fatalf("expert 0 back: status %v or wrong values", st)
	}
	// DropExpert: (0, 2) leaves the index at once.
	if err := be.DropExpert(0, 2); err != nil {
		t.Fatal(err)
	}
	if got, st := f.indexed(0, []float32{2}); st != 2 || sameBits(got, zero) >= 0 {
		t.Fatalf("a dropped expert: status %v, want 2 and a zero row", st)
	}
	// Dropping the cache empties the index.
	be.SetCachePolicy(nil)
	if err := be.SetExpertCache(int64(3*E*one), 1); err != nil {
		t.Fatal(err)
	}
	if got, st := f.indexed(0, []float32{0}); st != 2 || sameBits(got, zero) >= 0 {
		t.Fatalf("after SetExpertCache: status %v, want 2 and a zero row", st)
	}
}

// TestCombineTokenIndexed: CombineTokenIndexed, weights in device memory,
// is bit for bit CombineToken, for 1 to 32 rows and each shared expert mode.
func TestCombineTokenIndexed(t *testing.T) {
	be := newOrSkip(t)
	defer be.Close()
	const H = 1000
	f := newIdxFixture(t, be, 5, H, 64, 1)
	vec := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(f.rng.NormFloat64())
		}
		return v
	}
	for _, n := range []int{1, 4, 10, 32} {
		for mode := range 3 {
			h0, eo, w := vec(H), f.put(vec(n*H)), vec(n)
			var sd, gate backend.Buffer
			if mode > 0 {
				sd = f.put(vec(H))
			}
			if mode == 1 {
				gate = f.put(vec(1))
			}
			ha, hb := f.put(h0), f.put(h0)
			if err := errors.Join(be.CombineToken(ha, eo, w, sd, gate), be.CombineTokenIndexed(hb, eo, f.put(w), n, sd, gate)); err != nil {
				t.Fatal(err)
			}
			if i := sameBits(f.read(hb), f.read(ha)); i >= 0 {
				t.Fatalf("%d rows, mode %d: h[%d] differs", n, mode, i)
			}
		}
	}
	h := f.put(vec(H))
	if err := be.CombineTokenIndexed(h, f.put(vec(2*H)), f.put(vec(2)), 3, nil, nil); err == nil {
		t.Error("combine of 3 rows from a buffer of 2: no error")
	}
}

// TestIndexedGraph: RouteTopK, ExpertsIndexed and CombineTokenIndexed
// recorded into a graph and replayed give the bits the ops give run one by
// one, for the logits of the replay (written after the recording); binds
// are refused while recording.
func TestIndexedGraph(t *testing.T) {
	be := newOrSkip(t)
	defer be.Close()
	const H, I, E, K = 256, 128, 8, 4
	if err := be.SetExpertCache(1<<28, 1); err != nil {
		t.Fatal(err)
	}
	f := newIdxFixture(t, be, 31, H, I, K)
	for e := 0; e < E; e++ {
		f.keep(0, e, f.expert(backend.Q4, 32))
	}
	if !be.LayerCached(0, E) {
		t.Fatal("layer 0 not cached")
	}
	logits := f.alloc(E)
	h := f.alloc(H)
	step := func() error {
		return errors.Join(be.RouteTopK(f.ids, f.w, f.st, logits, 1, E, K, true),
			be.ExpertsIndexed(f.eo, f.g, f.u, f.x, f.ids, f.st, 0, K),
			be.CombineTokenIndexed(h, f.eo, f.w, K, nil, nil))
	}
	newLogits := func() []float32 {
		v := make([]float32, E)
		for i := range v {
			v[i] = float32(f.rng.NormFloat64())
		}
		return v
	}
	// direct runs the step op by op on l; replay replays g on l.
	direct := func(l []float32) []float32 {
		if err := errors.Join(be.Write(logits, l), be.Zero(h), be.Zero(f.st), step()); err != nil {
			t.Fatal(err)
		}
		return f.read(h)
	}
	if err := be.BeginGraph(); err != nil {
		t.Fatal(err)
	}
	recErr := step()
	_, bindErr := be.BindExpert(0, E, f.expert(backend.Q4, 32))
	g, err := be.EndGraph()
	if err := errors.Join(recErr, err); err != nil {
		t.Fatal(err)
	}
	defer g.Release()
	if bindErr == nil {
		t.Error("BindExpert while recording: no error")
	}
	for i := 0; i < 3; i++ {
		l := newLogits()
		want := direct(l)
		if err := errors.Join(be.Write(logits, l), be.Zero(h), be.Zero(f.st), g.Replay()); err != nil {
			t.Fatal(err)
		}
		if j := sameBits(f.read(h), want); j >= 0 || f.read(f.st)[0] != 0 {
			t.Fatalf("replay %d: h[%d] differs from the ops (status %v)", i, j, f.read(f.st)[0])
		}
	}
}

// BenchmarkIndexedStep times one token's routed experts with all of them
// cached (E = 64 experts of a Qwen3.5-397B layer's shape, K = 10): "device"
// routes and computes on the device (RouteTopK, ExpertsIndexed,
// CombineTokenIndexed), "host" reads the logits back, routes on the host
// and runs MatVecBatch, SwiGLU, MatVecBatch and CombineToken on the cached
// tensors. Each step ends with a sync, as a layer of the host path does.
func BenchmarkIndexedStep(b *testing.B) {
	be := newOrSkip(b)
	defer be.Close()
	const H, I, E, K = 4096, 1024, 64, 10
	if err := be.SetExpertCache(1<<34, 1); err != nil {
		b.Fatal(err)
	}
	for e := 0; e < E; e++ {
		ws := []backend.Weight{fastQ4(I, H, uint64(3*e)), fastQ4(I, H, uint64(3*e+1)), fastQ4(H, I, uint64(3*e+2))}
		ts, err := be.BindExpert(0, e, ws)
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range ts {
			be.Release(t)
		}
	}
	if !be.LayerCached(0, E) {
		b.Fatal("layer not cached")
	}
	mk := func(n int) backend.Buffer {
		x, err := be.Alloc(n)
		if err != nil {
			b.Fatal(err)
		}
		return x
	}
	x, g, u, eo, h := mk(H), mk(K*I), mk(K*I), mk(K*H), mk(H)
	ids, w, st, logits := mk(K), mk(K), mk(1), mk(E)
	l := make([]float32, E)
	for i := range l {
		l[i] = float32(i%7) * 0.1
	}
	if err := be.Write(logits, l); err != nil {
		b.Fatal(err)
	}
	view := func(v backend.Buffer, off, n int) backend.Buffer { r, _ := be.View(v, off, n); return r }
	host := func() error {
		lh := make([]float32, E)
		if err := be.Read(lh, logits); err != nil {
			return err
		}
		idx, wv := make([]int, K), make([]float32, K)
		if err := backend.Route(lh, K, idx, wv); err != nil {
			return err
		}
		var ys, xs []backend.Buffer
		var ws, all []backend.Tensor
		ts := make([][]backend.Tensor, K)
		for i, id := range idx {
			ts[i], _ = be.CachedExpert(0, id)
			all = append(all, ts[i]...)
		}
		for p := 0; p < 2; p++ {
			for i := range idx {
				ys, ws, xs = append(ys, view([]backend.Buffer{g, u}[p], i*I, I)), append(ws, ts[i][p]), append(xs, x)
			}
		}
		err := errors.Join(be.MatVecBatch(ys, ws, xs), be.SwiGLU(view(g, 0, K*I), view(g, 0, K*I), view(u, 0, K*I)))
		ys, ws, xs = ys[:0], ws[:0], xs[:0]
		for i := range idx {
			ys, ws, xs = append(ys, view(eo, i*H, H)), append(ws, ts[i][2]), append(xs, view(g, i*I, I))
		}
		err = errors.Join(err, be.MatVecBatch(ys, ws, xs), be.CombineToken(h, eo, wv, nil, nil))
		for _, t := range all {
			err = errors.Join(err, be.Release(t))
		}
		return errors.Join(err, be.Sync())
	}
	device := func() error {
		return errors.Join(be.RouteTopK(ids, w, st, logits, 1, E, K, true),
			be.ExpertsIndexed(eo, g, u, x, ids, st, 0, K), be.CombineTokenIndexed(h, eo, w, K, nil, nil), be.Sync())
	}
	for _, m := range []struct {
		name string
		step func() error
	}{{"host", host}, {"device", device}} {
		b.Run(m.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if err := m.step(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
