package backendtest

import (
	"fmt"
	"math"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
)

// testNormMatMul checks backend.NormMatMuler where a backend has it: each
// norm the model folds (the input norm before an in-projection, the heads'
// gated norm in place before out_proj, the post-mixer norm with its add)
// then the one-token MatMul of its output, bit for bit the norm's call and
// MatMul's in turn on the same backend (Y, X and the MatMul's output), for
// Q4 and Q8 weights; and a norm whose heads do not cover the weight's
// columns, which must still compute both calls' results.
func testNormMatMul(t *testing.T, be backend.Backend) {
	if _, ok := be.(backend.NormMatMuler); !ok {
		t.Skip("the backend does not fold a norm into a matmul")
	}
	if d := normMatMulDiff(t, be); d != "" {
		t.Fatal(d)
	}
}

// CheckNormMatMul runs the suite's NormMatMul case alone (a backend
// package's test of a setting the suite's backends do not have).
func CheckNormMatMul(t *testing.T, be backend.Backend) { testNormMatMul(t, be) }

// normMatMulDiff runs testNormMatMul's cases on be (a NormMatMuler) and
// describes the first element that differs ("" if none).
func normMatMulDiff(t *testing.T, be backend.Backend) string {
	nm := be.(backend.NormMatMuler)
	rng := newRNG("normmatmul")
	for _, c := range []struct {
		name      string
		H, dim    int
		gate, add bool
		inPlace   bool
		f         backend.Format
		rows      int
		cols      int // the weight's (H·dim unless the norm covers less)
	}{
		{"input norm q4", 1, 1024, false, false, false, backend.Q4, 96, 1024},
		{"gated heads q4", 8, 128, true, false, true, backend.Q4, 64, 1024},
		{"post norm with add q8", 1, 512, false, true, false, backend.Q8, 65, 512},
		{"heads not contiguous with the weight", 2, 64, false, false, false, backend.Q4, 16, 256},
	} {
		n := c.H * c.dim
		x0, z := randVec(rng, max(n, c.cols), 2), randVec(rng, max(n, c.cols), 1)
		wn := randVec(rng, c.dim, 1)
		wt, err := be.Register(DenseF32(1, c.dim, wn))
		must(t, err)
		w, _ := RandomWeight(rng, c.f, c.rows, c.cols, 64)
		mt, err := be.Register(w)
		must(t, err)
		l := backend.Heads{T: 1, H: c.H, Dim: c.dim, RowStride: n, HeadStride: c.dim}
		run := func(fused bool) (y, x, o []float32) {
			xb := put(t, be, x0)
			yb := xb
			if !c.inPlace {
				yb = put(t, be, make([]float32, max(n, c.cols)))
			}
			zb, ob := put(t, be, z), alloc(t, be, c.rows)
			nr := backend.Norm{Y: yb, X: xb, Z: zb, L: l, W: wt, Eps: 1e-6, Gate: c.gate, Add: c.add}
			if fused {
				must(t, nm.NormMatMul(nr, ob, mt))
			} else {
				must(t, nr.Apply(be))
				must(t, be.MatMul(ob, mt, yb, 1))
			}
			return get(t, be, yb), get(t, be, xb), get(t, be, ob)
		}
		gy, gx, gotO := run(true)
		wy, wx, wantO := run(false)
		for _, p := range []struct {
			what      string
			got, want []float32
		}{{"y", gy, wy}, {"x", gx, wx}, {"the matmul's output", gotO, wantO}} {
			for i := range p.want {
				if math.Float32bits(p.got[i]) != math.Float32bits(p.want[i]) {
					return fmt.Sprintf("%s: %s element %d: %v folded, %v from the two calls", c.name, p.what, i, p.got[i], p.want[i])
				}
			}
		}
	}
	return ""
}
