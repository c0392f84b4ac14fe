//go:build linux && cgo

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// newMMA opens a backend whose MatMuls take the tensor cores from minRows
// rows, or skips where the card has none (before sm_80).
func newMMA(t testing.TB, minRows int) *Backend {
	t.Helper()
	be := newOrSkip(t)
	be.Close()
	be, err := NewWithOptions(Options{MMAMinRows: minRows})
	if err != nil {
		t.Fatal(err)
	}
	if minRows > 0 && be.MMAMinRows() == 0 {
		be.Close()
		t.Skipf("no bf16 tensor cores on %s", be.Name())
	}
	return be
}

// TestConformanceTensorCores runs the whole conformance suite with every
// MatMul the tensor-core kernel takes (Q2, Q4, Q8 and BF16 weights, one
// row or more) on it: the same float64 reference and the same tolerance
// as the CUDA-core kernels, since the split of x into three bf16 pieces
// and the exact integer weights leave only float32 accumulation error.
// MatMulBatch's split width is lowered to 64 columns, so that the suite's
// small weights split (a 256-wide one four ways) and its partials and
// their sums (mmag_reduce) run on the GPU too.
func TestConformanceTensorCores(t *testing.T) {
	newMMA(t, 1).Close()
	backendtest.Run(t, func() backend.Backend {
		b, err := NewWithOptions(Options{MMAMinRows: 1, MMAGroupedCols: 64})
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// refMatMul64 is y = x·Wᵀ in float64 from the weight's exact values.
func refMatMul64(vals []float64, R, C int, x []float32, T int) []float64 {
	y := make([]float64, T*R)
	for t := 0; t < T; t++ {
		xt := x[t*C : (t+1)*C]
		for r := 0; r < R; r++ {
			w := vals[r*C : (r+1)*C]
			var s float64
			for j, v := range w {
				s += v * float64(xt[j])
			}
			y[t*R+r] = s
		}
	}
	return y
}

func relErr64(got []float32, want []float64) float64 {
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - w
		num += d * d
		den += w * w
	}
	return math.Sqrt(num / den)
}

// TestMatMulTensorCores checks prefill-sized matmuls on the tensor cores
// against float64, per token row, at the suite's MatMul tolerance (2e-5):
// split-K (few tokens, several block columns per output tile, summed in
// order) and whole-K launches, row and token tails, activations with a
// large common offset (the centring of the affine weights), every
// format the kernel takes, down to one row; then that a rerun is
// bit-identical (the split-K sum has a fixed order) and that a misaligned
// x falls back correctly.
func TestMatMulTensorCores(t *testing.T) {
	be := newMMA(t, 1)
	defer be.Close()
	for _, c := range []struct {
		f       backend.Format
		R, C, G int
		T       int
		offset  bool
	}{
		{backend.Q4, 1024, 4096, 64, 100, false}, // expert gate/up, split-K
		{backend.Q4, 4096, 1024, 64, 37, true},   // expert down, offset x
		{backend.Q8, 384, 512, 128, 300, false},
		{backend.Q2, 200, 256, 32, 65, true},
		{backend.BF16, 300, 256, 0, 129, false},
		{backend.Q4, 2048, 512, 64, 600, true}, // ≥ one tile per SM: no split
		{backend.Q4, 64, 128, 64, 1, false},
	} {
		name := fmt.Sprintf("%v/%dx%d/g%d/T%d", c.f, c.R, c.C, c.G, c.T)
		rng := rand.New(rand.NewPCG(uint64(c.R), uint64(c.T)))
		w, vals := backendtest.RandomWeight(rng, c.f, c.R, c.C, c.G)
		x := make([]float32, c.T*c.C)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
			if c.offset {
				x[i] = 3 + 0.1*x[i]
			}
		}
		want := refMatMul64(vals, c.R, c.C, x, c.T)
		got := runMatMul(t, be, w, x, c.T, c.R)
		worst := 0.0
		for tt := 0; tt < c.T; tt++ {
			e := relErr64(got[tt*c.R:(tt+1)*c.R], want[tt*c.R:(tt+1)*c.R])
			worst = max(worst, e)
			if !(e <= 2e-5) {
				t.Fatalf("%s: token %d: relative error %.3g against float64", name, tt, e)
			}
		}
		t.Logf("%s: worst token's relative error %.2g", name, worst)
		again := runMatMul(t, be, w, x, c.T, c.R)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(again[i]) {
				t.Fatalf("%s: rerun differs at %d: %v then %v", name, i, got[i], again[i])
			}
		}
	}

	// A view starting one float in: x is not 16-byte aligned, so the
	// CUDA-core kernel must take it.
	rng := rand.New(rand.NewPCG(5, 5))
	R, C, T := 256, 512, 20
	w, vals := backendtest.RandomWeight(rng, backend.Q4, R, C, 64)
	wt, err := be.Register(w)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, T*C)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	xb, _ := be.Alloc(T*C + 1)
	if err := be.Write(xb, append([]float32{7}, x...)); err != nil {
		t.Fatal(err)
	}
	xv, err := be.View(xb, 1, T*C)
	if err != nil {
		t.Fatal(err)
	}
	yb, _ := be.Alloc(T * R)
	if err := be.MatMul(yb, wt, xv, T); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, T*R)
	if err := be.Read(got, yb); err != nil {
		t.Fatal(err)
	}
	if e := relErr64(got, refMatMul64(vals, R, C, x, T)); !(e <= 2e-5) {
		t.Fatalf("misaligned x: relative error %.3g", e)
	}
}
