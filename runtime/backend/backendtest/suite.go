// Package backendtest is the conformance suite every backend.Backend
// implementation runs: each op is compared with a plain float64 definition
// (ref.go) on random inputs, over several shapes, T = 1 and T > 1, and all
// weight formats.
package backendtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Tolerances, as relative L2 errors ‖got − want‖/‖want‖ against float64.
//
// float32 has unit roundoff u = 2^-24 ≈ 6e-8. A dot product of n terms
// accumulated in float32 has a relative error of order u·√n times the
// cancellation ratio Σ|terms|/|Σ terms| (≈ 1–3 for these inputs): ≈ 4e-6
// at n = 4096. tolMatMul allows for that and for other summation orders
// (a GPU's tree reduction), yet a single wrong quantised element in a row of
// 1024 (≥ one scale step, ≈ 3% of an element) moves the row's result by far more.
const (
	tolMatMul = 2e-5
	// Element-wise ops do a handful of float32 roundings per element
	// (rsqrt, exp, multiply); 1e-6 is ≈ 16u and holds for 2-ulp GPU
	// intrinsics too.
	tolElem = 1e-6
	// Attention: two dot products (scores, then weights·V) over ≤ 256 terms
	// plus exp; same reasoning as tolMatMul.
	tolAttn = 2e-5
	// DeltaNet carries a float32 state across tokens, so roundoff
	// accumulates with T (≈ u·√(T·Dk) per step), but the decay g < 1
	// forgets old error: measured ≈ 2e-7 at every T up to 200, sequential
	// and chunked (64-token WY form) alike, strong decay and saturated beta
	// included. A wrong gate or a chunk boundary dropping one token's
	// update is an O(1) relative error.
	tolDelta = 1e-5
)

// Run runs the conformance suite against backends made by newBackend (one
// per subtest).
func Run(t *testing.T, newBackend func() backend.Backend) {
	tests := []struct {
		name string
		fn   func(*testing.T, backend.Backend)
	}{
		{"Buffers", testBuffers},
		{"MatMul", testMatMul},
		{"MatMulBatch", testMatMulBatch},
		{"MatVecBatch", testMatVecBatch},
		{"Embed", testEmbed},
		{"RMSNorm", testRMSNorm},
		{"GatedRMSNorm", testGatedRMSNorm},
		{"AddRMSNorm", testAddRMSNorm},
		{"NormMatMul", testNormMatMul},
		{"Rope", testRope},
		{"Attention", testAttention},
		{"LatentAttention", testLatentAttention},
		{"Conv1D", testConv1D},
		{"DeltaNet", testDeltaNet},
		{"Elementwise", testElementwise},
		{"Bind", testBind},
		{"Errors", testErrors},
		{"Free", testFree},
		{"RouteTopK", testRouteTopK},
		{"ReadAsync", testReadAsync},
		{"ArgMax", testArgMax},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := newBackend()
			defer be.Close()
			tc.fn(t, be)
		})
	}
}

func put(t *testing.T, be backend.Backend, v []float32) backend.Buffer {
	t.Helper()
	b, err := be.Alloc(len(v))
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Write(b, v); err != nil {
		t.Fatal(err)
	}
	return b
}

func alloc(t *testing.T, be backend.Backend, n int) backend.Buffer {
	t.Helper()
	b, err := be.Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func get(t *testing.T, be backend.Backend, b backend.Buffer) []float32 {
	t.Helper()
	v := make([]float32, b.Len())
	if err := be.Read(v, b); err != nil {
		t.Fatal(err)
	}
	return v
}

func check(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) < len(want) {
		t.Fatalf("%s: got %d values, want %d", what, len(got), len(want))
	}
	for i, w := range want {
		if math.IsNaN(float64(got[i])) != math.IsNaN(w) {
			t.Fatalf("%s: element %d is %v, want %v", what, i, got[i], w)
		}
	}
	if e := relErr(got, want); !(e <= tol) {
		worst, wi := 0.0, 0
		for i, w := range want {
			if d := math.Abs(float64(got[i]) - w); d > worst {
				worst, wi = d, i
			}
		}
		t.Errorf("%s: relative error %.3g > %.3g (worst element %d: got %v, want %v)", what, e, tol, wi, got[wi], want[wi])
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newRNG(name string) *rand.Rand {
	var h uint64 = 14695981039346656037
	for _, c := range name {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return rand.New(rand.NewPCG(h, 7))
}

var allFormats = []backend.Format{backend.Q2, backend.Q4, backend.Q8, backend.BF16, backend.F16, backend.F32}

func testMatMul(t *testing.T, be backend.Backend) {
	type shape struct{ R, C, G int }
	// Rows not multiples of 8 (13, 37, 1001) reach the kernels' tails; 128
	// columns is the smallest width with two groups; group 128 exercises a
	// non-default group; 1024×512 is large enough for multi-threading.
	shapes := []shape{{1, 64, 64}, {13, 128, 64}, {37, 256, 64}, {64, 384, 128}, {1001, 512, 64}, {256, 1024, 64}}
	for _, f := range allFormats {
		for _, s := range shapes {
			for _, T := range []int{1, 2, 5, 9} {
				name := fmt.Sprintf("%v/%dx%d/g%d/T%d", f, s.R, s.C, s.G, T)
				rng := newRNG(name)
				w, vals := RandomWeight(rng, f, s.R, s.C, s.G)
				wt, err := be.Register(w)
				must(t, err)
				x := randVec(rng, T*s.C, 1)
				if T == 5 && s.R > 1 {
					// Activations with a large common offset: a kernel that
					// folds the bias as b·Σx without centring q cancels two
					// large terms and fails here, not on zero-mean inputs. (Not
					// with one row: a single output can cancel arbitrarily.)
					for i := range x {
						x[i] = 3 + 0.1*x[i]
					}
				}
				xb := put(t, be, x)
				yb := alloc(t, be, T*s.R)
				must(t, be.MatMul(yb, wt, xb, T))
				got := get(t, be, yb)
				want := refMatMul(vals, s.R, s.C, x, T)
				for tt := 0; tt < T; tt++ {
					check(t, fmt.Sprintf("%s token %d", name, tt), got[tt*s.R:(tt+1)*s.R], want[tt*s.R:(tt+1)*s.R], tolMatMul)
				}
			}
		}
	}
}

func testEmbed(t *testing.T, be backend.Backend) {
	for _, f := range allFormats {
		rng := newRNG("embed" + f.String())
		R, C := 50, 192
		w, vals := RandomWeight(rng, f, R, C, 64)
		wt, err := be.Register(w)
		must(t, err)
		ids := []int{3, 0, 49, 3, 17}
		yb := alloc(t, be, len(ids)*C)
		must(t, be.Embed(yb, wt, ids))
		got := get(t, be, yb)
		want := make([]float64, 0, len(ids)*C)
		for _, id := range ids {
			want = append(want, vals[id*C:(id+1)*C]...)
		}
		// q*s + b is one or two float32 roundings away from the exact value.
		check(t, "embed "+f.String(), got, want, tolElem)
	}
}

func testRMSNorm(t *testing.T, be backend.Backend) {
	rng := newRNG("rmsnorm")
	// Hidden rows, weighted, out of place.
	T, n := 3, 200
	x := randVec(rng, T*n, 2)
	w := randVec(rng, n, 1)
	wt, err := be.Register(DenseF32(1, n, w))
	must(t, err)
	xb, yb := put(t, be, x), alloc(t, be, T*n)
	l := backend.Rows(T, n)
	must(t, be.RMSNorm(yb, xb, l, wt, 1e-6))
	check(t, "rows", get(t, be, yb), refRMSNorm(x, l, w, 1e-6, nil), tolElem)
	// No weight, large eps (eps matters).
	must(t, be.RMSNorm(yb, xb, l, nil, 0.5))
	check(t, "no weight", get(t, be, yb), refRMSNorm(x, l, nil, 0.5, nil), tolElem)
	// Per-head q_norm on the q halves of an interleaved [T, H, q|gate] row,
	// in place: the gate halves must be left alone.
	H, D := 3, 16
	qg := randVec(rng, T*H*2*D, 1)
	qw := randVec(rng, D, 1)
	qwt, err := be.Register(DenseF32(1, D, qw))
	must(t, err)
	qb := put(t, be, qg)
	hl := backend.Heads{T: T, H: H, Dim: D, RowStride: 2 * H * D, HeadStride: 2 * D}
	must(t, be.RMSNorm(qb, qb, hl, qwt, 1e-6))
	check(t, "per-head in place", get(t, be, qb), refRMSNorm(qg, hl, qw, 1e-6, nil), tolElem)
	// A bf16 weight (the packer's native norm format).
	bw, bv := RandomWeight(rng, backend.BF16, 1, n, 0)
	bwt, err := be.Register(bw)
	must(t, err)
	must(t, be.RMSNorm(yb, xb, l, bwt, 1e-6))
	w32 := make([]float32, n)
	for i, v := range bv {
		w32[i] = float32(v)
	}
	check(t, "bf16 weight", get(t, be, yb), refRMSNorm(x, l, w32, 1e-6, nil), tolElem)
	// A model's hidden size, in place: a GPU thread holds many elements
	// (unrolled loads, then a remainder: 4,100 is no multiple of a block).
	n = 4100
	x = randVec(rng, 2*n, 3)
	w = randVec(rng, n, 1)
	wt, err = be.Register(DenseF32(1, n, w))
	must(t, err)
	xb = put(t, be, x)
	l = backend.Rows(2, n)
	must(t, be.RMSNorm(xb, xb, l, wt, 1e-6))
	check(t, "hidden size in place", get(t, be, xb), refRMSNorm(x, l, w, 1e-6, nil), tolElem)
}

func testGatedRMSNorm(t *testing.T, be backend.Backend) {
	rng := newRNG("gated")
	T, H, D := 4, 3, 32
	x := randVec(rng, T*H*D, 1)
	z := randVec(rng, T*H*D, 2)
	w := randVec(rng, D, 1)
	wt, err := be.Register(DenseF32(1, D, w))
	must(t, err)
	l := backend.Packed(T, H, D)
	xb, zb, yb := put(t, be, x), put(t, be, z), alloc(t, be, T*H*D)
	must(t, be.GatedRMSNorm(yb, xb, zb, l, wt, 1e-6))
	check(t, "gated", get(t, be, yb), refRMSNorm(x, l, w, 1e-6, z), tolElem)
	// Wide heads: many elements a GPU thread (unrolled, then a remainder).
	T, H, D = 1, 2, 2100
	x, z, w = randVec(rng, T*H*D, 1), randVec(rng, T*H*D, 2), randVec(rng, D, 1)
	wt, err = be.Register(DenseF32(1, D, w))
	must(t, err)
	l = backend.Packed(T, H, D)
	xb, zb, yb = put(t, be, x), put(t, be, z), alloc(t, be, T*H*D)
	must(t, be.GatedRMSNorm(yb, xb, zb, l, wt, 1e-6))
	check(t, "gated wide", get(t, be, yb), refRMSNorm(x, l, w, 1e-6, z), tolElem)
}

func testRope(t *testing.T, be backend.Backend) {
	rng := newRNG("rope")
	for _, c := range []struct{ T, H, D, rot, pos0 int }{{1, 2, 64, 16, 0}, {5, 3, 32, 32, 7}, {2, 4, 256, 64, 100000}} {
		name := fmt.Sprintf("T%d H%d D%d rot%d pos%d", c.T, c.H, c.D, c.rot, c.pos0)
		// Interleaved [q|gate] rows: only the q halves rotate.
		l := backend.Heads{T: c.T, H: c.H, Dim: c.D, RowStride: 2 * c.H * c.D, HeadStride: 2 * c.D}
		x := randVec(rng, c.T*c.H*2*c.D, 1)
		xb := put(t, be, x)
		must(t, be.Rope(xb, l, c.rot, 1e7, c.pos0))
		// At position 1e5 the float64 reference and a float64-angle backend
		// agree to ~1e-7; a float32-angle backend would not (phase error ~1e-3).
		check(t, name, get(t, be, xb), refRope(x, l, c.rot, 1e7, c.pos0), tolElem)
	}
}

func testAttention(t *testing.T, be backend.Backend) {
	for _, c := range []struct {
		T, H, kvH, D, pos0 int
		gated              bool
	}{
		{5, 4, 2, 16, 0, true},  // prefill from empty cache
		{1, 4, 2, 16, 9, true},  // decode step
		{3, 4, 1, 32, 4, false}, // a second prefill chunk, MQA, no gate
		{2, 2, 2, 64, 1, true},  // MHA
		{1, 8, 2, 256, 60, true},
		{1, 4, 2, 128, 700, true}, // a long context: many warps, many chunks each
	} {
		name := fmt.Sprintf("T%d H%d kv%d D%d pos%d", c.T, c.H, c.kvH, c.D, c.pos0)
		rng := newRNG(name)
		n := c.pos0 + c.T
		qd := c.H * c.D
		// q and gate interleaved per head, as q_proj emits them.
		qg := randVec(rng, c.T*2*qd, 1)
		k := randVec(rng, (n+3)*c.kvH*c.D, 1) // cache longer than n: must be ignored
		v := randVec(rng, (n+3)*c.kvH*c.D, 1)
		ql := backend.Heads{T: c.T, H: c.H, Dim: c.D, RowStride: 2 * qd, HeadStride: 2 * c.D}
		gl := ql
		gl.Off = c.D
		q, gate := make([]float32, c.T*qd), make([]float32, c.T*qd)
		for tt := 0; tt < c.T; tt++ {
			for h := 0; h < c.H; h++ {
				copy(q[(tt*c.H+h)*c.D:], qg[ql.At(tt, h):ql.At(tt, h)+c.D])
				copy(gate[(tt*c.H+h)*c.D:], qg[gl.At(tt, h):gl.At(tt, h)+c.D])
			}
		}
		qb, kb, vb := put(t, be, qg), put(t, be, k), put(t, be, v)
		ob := alloc(t, be, c.T*qd)
		var gb backend.Buffer
		refGate := []float32(nil)
		if c.gated {
			gb, refGate = qb, gate
		}
		must(t, be.Attention(ob, qb, gb, ql, gl, kb, vb, c.kvH, c.pos0))
		check(t, name, get(t, be, ob), refAttention(q, refGate, k, v, c.T, c.H, c.D, c.kvH, c.pos0), tolAttn)
	}
}

// testLatentAttention compares the absorbed latent attention with attention over the per-head
// keys [Wk_h·lat | kr] and values Wv_h·lat it stands for, computed in float64 (refLatent).
func testLatentAttention(t *testing.T, be backend.Backend) {
	for _, c := range []struct {
		s    backend.LatentShape
		pos0 int
		f    backend.Format
	}{
		{backend.LatentShape{T: 5, H: 4, Nope: 32, Rope: 16, V: 24, KVL: 64}, 0, backend.BF16},   // prefill from empty
		{backend.LatentShape{T: 1, H: 4, Nope: 32, Rope: 16, V: 24, KVL: 64}, 9, backend.Q4},     // decode
		{backend.LatentShape{T: 3, H: 2, Nope: 16, Rope: 8, V: 16, KVL: 128}, 4, backend.F32},    // a second chunk
		{backend.LatentShape{T: 2, H: 3, Nope: 24, Rope: 8, V: 32, KVL: 64}, 1, backend.Q8},      // v wider than nope
		{backend.LatentShape{T: 1, H: 2, Nope: 128, Rope: 64, V: 128, KVL: 512}, 40, backend.Q4}, // DeepSeek-V3's head
		{backend.LatentShape{T: 2, H: 2, Nope: 128, Rope: 64, V: 128, KVL: 512}, 7, backend.BF16},
		{backend.LatentShape{T: 3, H: 3, Nope: 16, Rope: 8, V: 16, KVL: 64}, 150, backend.Q4}, // a long context
	} {
		s := c.s
		s.Scale = float32(0.7 / math.Sqrt(float64(s.Nope+s.Rope)))
		name := fmt.Sprintf("T%d H%d nope%d rope%d v%d kvl%d pos%d %v", s.T, s.H, s.Nope, s.Rope, s.V, s.KVL, c.pos0, c.f)
		rng := newRNG(name)
		n := c.pos0 + s.T
		w, wref := RandomWeight(rng, c.f, s.WeightRows(), s.KVL, 64)
		wt, err := be.Register(w)
		must(t, err)
		q := randVec(rng, s.QLen(), 1)
		lat := randVec(rng, (n+3)*s.KVL, 1) // caches longer than n: must be ignored
		kr := randVec(rng, (n+3)*s.Rope, 1)
		qb, lb, rb := put(t, be, q), put(t, be, lat), put(t, be, kr)
		ob := alloc(t, be, s.OutLen())
		must(t, be.LatentAttention(ob, qb, wt, lb, rb, s, c.pos0))
		check(t, name, get(t, be, ob), refLatent(q, wref, lat, kr, s, c.pos0), tolMatMul)
	}
}

func testConv1D(t *testing.T, be backend.Backend) {
	rng := newRNG("conv")
	T, C, K := 9, 13, 4
	x := randVec(rng, T*C, 1)
	w := randVec(rng, C*K, 0.5)
	wt, err := be.Register(DenseF32(C, K, w))
	must(t, err)
	want := refConv(x, w, T, C, K)
	// Three calls (4 + 1 + 4 tokens) must equal one pass over the sequence:
	// the state carries the last K-1 inputs across calls. The last call runs
	// in place (y = x).
	state := alloc(t, be, (K-1)*C)
	got := make([]float32, 0, T*C)
	for i, chunk := range [][2]int{{0, 4}, {4, 5}, {5, 9}} {
		n := chunk[1] - chunk[0]
		xb := put(t, be, x[chunk[0]*C:chunk[1]*C])
		yb := xb
		if i < 2 {
			yb = alloc(t, be, n*C)
		}
		must(t, be.Conv1D(yb, xb, wt, state, n))
		got = append(got, get(t, be, yb)...)
	}
	check(t, "conv chunks", got, want, tolElem)
	st := get(t, be, state)
	check(t, "conv state", st, f64(x[(T-K+1)*C:]), 0)
}

// deltaCase is one DeltaNet input: the shape and how the gates are drawn.
type deltaCase struct {
	s backend.DeltaShape
	// aLog0 is added to every A_log (3: strong decay, g ≈ e^-14 on
	// average) and bSat, when set, makes every b ±bSat (12: beta within
	// 1e-5 of 0 or of 1).
	aLog0, bSat float32
}

func testDeltaNet(t *testing.T, be backend.Backend) {
	shape := func(T, Hk, Dk, Hv, Dv int) backend.DeltaShape {
		return backend.DeltaShape{T: T, Hk: Hk, Dk: Dk, Hv: Hv, Dv: Dv, Eps: 1e-6}
	}
	cases := []deltaCase{
		{s: shape(7, 2, 32, 4, 32)},
		{s: shape(24, 1, 16, 3, 8)},
		{s: shape(3, 4, 128, 8, 128)},
		// Around the 64-token chunk of a chunked implementation.
		{s: shape(1, 2, 32, 4, 16)},
		{s: shape(63, 2, 32, 4, 16)},
		{s: shape(64, 2, 32, 4, 16)},
		{s: shape(65, 2, 32, 4, 16)},
		{s: shape(200, 1, 64, 2, 32)},
		{s: shape(80, 1, 32, 2, 16), aLog0: 3},
		{s: shape(80, 1, 32, 2, 16), bSat: 12},
	}
	for _, c := range cases {
		s := c.s
		name := fmt.Sprintf("Hk%d Dk%d Hv%d Dv%d T%d", s.Hk, s.Dk, s.Hv, s.Dv, s.T)
		if c.aLog0 != 0 || c.bSat != 0 {
			name += fmt.Sprintf(" aLog+%g b±%g", c.aLog0, c.bSat)
		}
		rng := newRNG(name)
		W := s.QKVLen()
		qkv := randVec(rng, s.T*W, 1)
		a := randVec(rng, s.T*s.Hv, 1)
		b := randVec(rng, s.T*s.Hv, 1)
		if c.bSat != 0 {
			for i := range b {
				b[i] = float32(math.Copysign(float64(c.bSat), float64(b[i])))
			}
		}
		aLog := randVec(rng, s.Hv, 1)
		for i := range aLog {
			aLog[i] += c.aLog0
		}
		dt := randVec(rng, s.Hv, 0.5)
		alt, err := be.Register(DenseF32(1, s.Hv, aLog))
		must(t, err)
		dtt, err := be.Register(DenseF32(1, s.Hv, dt))
		must(t, err)
		want := refDeltaNet(qkv, a, b, aLog, dt, s)
		// Run as two prefills (the second from a non-zero state) then one
		// decode token: the state carries across calls.
		state := alloc(t, be, s.StateLen())
		var got []float32
		p := (s.T - 1) / 3
		for _, r := range [][2]int{{0, p}, {p, s.T - 1}, {s.T - 1, s.T}} {
			c := s
			c.T = r[1] - r[0]
			if c.T == 0 {
				continue
			}
			yb := alloc(t, be, c.T*s.Hv*s.Dv)
			must(t, be.DeltaNet(yb, put(t, be, qkv[r[0]*W:r[1]*W]), put(t, be, a[r[0]*s.Hv:r[1]*s.Hv]),
				put(t, be, b[r[0]*s.Hv:r[1]*s.Hv]), alt, dtt, state, c))
			got = append(got, get(t, be, yb)...)
		}
		check(t, name, got, want, tolDelta)
	}
}

func testElementwise(t *testing.T, be backend.Backend) {
	rng := newRNG("elementwise")
	n := 37
	g, u := randVec(rng, n, 2), randVec(rng, n, 1)
	yb := alloc(t, be, n)
	must(t, be.SwiGLU(yb, put(t, be, g), put(t, be, u)))
	want := make([]float64, n)
	for i := range want {
		want[i] = silu(float64(g[i])) * float64(u[i])
	}
	check(t, "swiglu", get(t, be, yb), want, tolElem)

	// A decode step's ten experts at once and an odd tail, in place as the
	// layers call it: long enough for a backend to split it over threads,
	// where a part written twice or left out shows.
	lr := newRNG("swiglu long")
	nl := 10*1024 + 3
	gl, ul := randVec(lr, nl, 4), randVec(lr, nl, 1)
	glb := put(t, be, gl)
	must(t, be.SwiGLU(glb, glb, put(t, be, ul)))
	wantl := make([]float64, nl)
	for i := range wantl {
		wantl[i] = silu(float64(gl[i])) * float64(ul[i])
	}
	check(t, "swiglu in place, long", get(t, be, glb), wantl, tolElem)

	// Gather rows 2,0,2 of a [3, 5] source.
	src := randVec(rng, 15, 1)
	gb := alloc(t, be, 15)
	must(t, be.Gather(gb, put(t, be, src), []int{2, 0, 2}, 5))
	want = append(append(f64(src[10:15]), f64(src[0:5])...), f64(src[10:15])...)
	check(t, "gather", get(t, be, gb), want, 0)

	// ScatterAdd of two rows into rows 1 and 1 again (accumulates) and 0.
	h := randVec(rng, 10, 1)
	rows := randVec(rng, 15, 1)
	hb := put(t, be, h)
	wts := []float32{0.5, 0.25, 2}
	must(t, be.ScatterAdd(hb, put(t, be, rows), []int{1, 1, 0}, wts, 5))
	want = f64(h)
	for i, r := range []int{1, 1, 0} {
		for j := 0; j < 5; j++ {
			want[r*5+j] += float64(wts[i]) * float64(rows[i*5+j])
		}
	}
	check(t, "scatter-add", get(t, be, hb), want, tolElem)
	// A prompt's combine: 12 tokens' 3 picks each, in expert order (each
	// token's rows apart, its own in ascending source row), rows wider than
	// a block; tokens 4 and 9 picked nothing and stay as they were.
	{
		const T, K, m = 12, 3, 300
		var rows []int
		for e := 0; len(rows) < (T-2)*K; e++ {
			for tk := range T {
				if tk != 4 && tk != 9 && (tk+e)%4 == 0 && len(rows) < (T-2)*K {
					rows = append(rows, tk)
				}
			}
		}
		h := randVec(rng, T*m, 1)
		src := randVec(rng, len(rows)*m, 1)
		wts := randVec(rng, len(rows), 1)
		hb := put(t, be, h)
		must(t, be.ScatterAdd(hb, put(t, be, src), rows, wts, m))
		want := f64(h)
		for i, r := range rows {
			for j := range m {
				want[r*m+j] += float64(wts[i]) * float64(src[i*m+j])
			}
		}
		got := get(t, be, hb)
		check(t, "scatter-add, a prompt", got, want, tolElem)
		for _, tk := range []int{4, 9} {
			if i := FirstDiff(got[tk*m:(tk+1)*m], h[tk*m:(tk+1)*m]); i >= 0 {
				t.Fatalf("scatter-add, a prompt: token %d, picked by nothing, changed at %d", tk, i)
			}
		}
	}

	// GatedAdd: h[t] += sigmoid(gate[t]) x[t], then Add.
	T, m := 3, 6
	h = randVec(rng, T*m, 1)
	x := randVec(rng, T*m, 1)
	gate := randVec(rng, T, 2)
	hb = put(t, be, h)
	xb := put(t, be, x)
	must(t, be.GatedAdd(hb, xb, put(t, be, gate), T))
	must(t, be.Add(hb, xb))
	want = f64(h)
	for i := range want {
		want[i] += sig(float64(gate[i/m]))*float64(x[i]) + float64(x[i])
	}
	check(t, "gated add + add", get(t, be, hb), want, tolElem)
}

func testBuffers(t *testing.T, be backend.Backend) {
	v := []float32{1, 2, 3, 4, 5, 6}
	b := put(t, be, v)
	if b.Len() != 6 {
		t.Fatalf("Len = %d, want 6", b.Len())
	}
	view, err := be.View(b, 2, 3)
	must(t, err)
	if got := get(t, be, view); fmt.Sprint(got) != "[3 4 5]" {
		t.Fatalf("view = %v, want [3 4 5]", got)
	}
	must(t, be.Write(view, []float32{9, 9}))
	must(t, be.Copy(view, put(t, be, []float32{7, 8, 9})))
	if got := get(t, be, b); fmt.Sprint(got) != "[1 2 7 8 9 6]" {
		t.Fatalf("after writing through a view: %v", got)
	}
	must(t, be.Zero(view))
	if got := get(t, be, b); fmt.Sprint(got) != "[1 2 0 0 0 6]" {
		t.Fatalf("after zeroing a view: %v", got)
	}
	z := alloc(t, be, 4)
	if got := get(t, be, z); fmt.Sprint(got) != "[0 0 0 0]" {
		t.Fatalf("Alloc not zeroed: %v", got)
	}
}

// testFree: work issued before Free completes with the buffer's values;
// afterwards the buffer and its views are refused, and so are a second
// Free, a Free of a view and of a foreign value.
func testFree(t *testing.T, be backend.Backend) {
	a := put(t, be, []float32{1, 2, 3, 4})
	view, err := be.View(a, 1, 2)
	must(t, err)
	dst := put(t, be, []float32{10, 20, 30, 40})
	must(t, be.Add(dst, a))
	if err := be.Free(view); err == nil {
		t.Fatal("Free of a view succeeded")
	}
	must(t, be.Free(a))
	if got := get(t, be, dst); fmt.Sprint(got) != "[11 22 33 44]" {
		t.Fatalf("op issued before Free read %v, want [11 22 33 44]", got)
	}
	host := make([]float32, 2)
	for name, err := range map[string]error{
		"Read":        be.Read(host, a),
		"Read (view)": be.Read(host, view),
		"Write":       be.Write(a, host),
		"Add":         be.Add(dst, a),
		"Zero (view)": be.Zero(view),
		"Free again":  be.Free(a),
		"Free(nil)":   be.Free(nil),
	} {
		if err == nil {
			t.Errorf("%s after Free succeeded", name)
		}
	}
	if _, err := be.View(a, 0, 1); err == nil {
		t.Error("View of a freed buffer succeeded")
	}
	empty := alloc(t, be, 0)
	must(t, be.Free(empty))
	// Buffers other than the freed one are unaffected, and the memory can
	// be allocated again many times over.
	for i := 0; i < 50; i++ {
		b := alloc(t, be, 1<<16)
		must(t, be.Write(b, []float32{float32(i)}))
		head, err := be.View(b, 0, 4)
		must(t, err)
		must(t, be.Add(dst, head))
		must(t, be.Free(b))
	}
	if got := get(t, be, dst); fmt.Sprint(got) != fmt.Sprint([]float32{11 + 49*50/2, 22, 33, 44}) {
		t.Fatalf("after 50 alloc/free rounds dst = %v", got)
	}
}

// testBind streams "experts" through one reused host buffer with
// Bind/Release, as the runtime does with pread buffers.
func testBind(t *testing.T, be backend.Backend) {
	rng := newRNG("bind")
	R, C := 40, 128
	host := make([]byte, 0, 1<<16)
	x := randVec(rng, C, 1)
	xb := put(t, be, x)
	for e := 0; e < 3; e++ {
		w, vals := RandomWeight(rng, backend.Q4, R, C, 64)
		// Copy into the shared host buffer, as pread would.
		host = host[:0]
		host = append(host, w.Data...)
		host = append(host, w.Scales...)
		host = append(host, w.Biases...)
		d, s := len(w.Data), len(w.Scales)
		w.Data, w.Scales, w.Biases = host[:d], host[d:d+s], host[d+s:d+2*s]
		wt, err := be.Bind(w)
		must(t, err)
		yb := alloc(t, be, R)
		must(t, be.MatMul(yb, wt, xb, 1))
		check(t, fmt.Sprintf("expert %d", e), get(t, be, yb), refMatMul(vals, R, C, x, 1), tolMatMul)
		must(t, be.Release(wt))
		if err := be.MatMul(yb, wt, xb, 1); err == nil {
			t.Fatal("MatMul with a released tensor succeeded")
		}
	}
}

// testErrors: bad arguments are errors, never panics.
func testErrors(t *testing.T, be backend.Backend) {
	rng := newRNG("errors")
	w, _ := RandomWeight(rng, backend.Q4, 8, 64, 64)
	wt, err := be.Register(w)
	must(t, err)
	x, y := alloc(t, be, 64), alloc(t, be, 8)
	short := alloc(t, be, 7)
	bad := w
	bad.Scales = bad.Scales[:2]
	bad2 := w
	bad2.Group = 48
	cases := []struct {
		name string
		err  func() error
	}{
		{"register short scales", func() error { _, err := be.Register(bad); return err }},
		{"register bad group", func() error { _, err := be.Register(bad2); return err }},
		{"register zero shape", func() error { _, err := be.Register(backend.Weight{Format: backend.F32}); return err }},
		{"matmul short y", func() error { return be.MatMul(short, wt, x, 1) }},
		{"matmul short x", func() error { return be.MatMul(y, wt, x, 2) }},
		{"matmul T=0", func() error { return be.MatMul(y, wt, x, 0) }},
		{"matmul nil weight", func() error { return be.MatMul(y, nil, x, 1) }},
		{"view out of range", func() error { _, err := be.View(x, 60, 5); return err }},
		{"alloc negative", func() error { _, err := be.Alloc(-1); return err }},
		{"embed id out of range", func() error { return be.Embed(x, wt, []int{8}) }},
		{"embed negative id", func() error { return be.Embed(x, wt, []int{-1}) }},
		{"release registered", func() error { return be.Release(wt) }},
		{"rmsnorm layout past end", func() error { return be.RMSNorm(y, y, backend.Rows(2, 8), nil, 1e-6) }},
		{"rmsnorm weight size", func() error { return be.RMSNorm(x, x, backend.Rows(1, 64), wt, 1e-6) }},
		{"rope odd dim", func() error { return be.Rope(x, backend.Rows(1, 64), 15, 1e4, 0) }},
		{"attention cache short", func() error {
			return be.Attention(y, y, nil, backend.Packed(1, 2, 4), backend.Heads{}, short, short, 2, 1)
		}},
		{"attention heads", func() error {
			return be.Attention(y, y, nil, backend.Packed(1, 2, 4), backend.Heads{}, x, x, 3, 0)
		}},
		{"latent attention weight shape", func() error {
			// wt is [8, 64]: 2 heads of nope 2 + v 2 rows want 64 columns, but 4 rows of 4+... do not.
			return be.LatentAttention(y, x, wt, x, x, backend.LatentShape{T: 1, H: 2, Nope: 2, Rope: 2, V: 3, KVL: 64, Scale: 1}, 0)
		}},
		{"latent attention cache short", func() error {
			return be.LatentAttention(y, x, wt, short, short, backend.LatentShape{T: 1, H: 2, Nope: 2, Rope: 2, V: 2, KVL: 64, Scale: 1}, 0)
		}},
		{"deltanet heads", func() error {
			return be.DeltaNet(y, x, y, y, wt, wt, x, backend.DeltaShape{T: 1, Hk: 3, Dk: 2, Hv: 4, Dv: 2})
		}},
		{"swiglu lengths", func() error { return be.SwiGLU(y, x, y) }},
		{"gather row", func() error { return be.Gather(y, x, []int{100}, 8) }},
		{"scatter weights", func() error { return be.ScatterAdd(x, y, []int{0}, nil, 8) }},
		{"gated add", func() error { return be.GatedAdd(short, x, y, 2) }},
		{"add lengths", func() error { return be.Add(x, y) }},
		{"copy lengths", func() error { return be.Copy(x, y) }},
		{"write too long", func() error { return be.Write(short, make([]float32, 8)) }},
	}
	for _, c := range cases {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: panicked: %v", c.name, r)
				}
			}()
			if err := c.err(); err == nil {
				t.Errorf("%s: no error", c.name)
			}
		}()
	}
}
