package backendtest

import (
	"fmt"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
)

// testMatVecBatch checks backend.MatVecBatcher where a backend has it: each
// job's bits are MatMul's for one token (the model computes a layer's
// experts in one batch on one step and one at a time on another, and the
// two must agree), and within MatMul's tolerance of float64. Jobs that
// share one x buffer (a layer's gate and up jobs), an x that starts one
// value into its buffer, rows not a multiple of 4 (a batch that lays jobs
// end to end must not let one job's rows shift another's kernel blocks),
// and every format.
func testMatVecBatch(t *testing.T, be backend.Backend) {
	bt, ok := be.(backend.MatVecBatcher)
	if !ok {
		t.Skip("the backend has no batched matvec")
	}
	const R, C, n = 202, 256, 6
	for _, f := range allFormats {
		G := 64
		if f == backend.Q8 {
			G = 128
		}
		name := fmt.Sprintf("%v/g%d", f, G)
		rng := newRNG("matvecbatch" + name)
		ws, vals := make([]backend.Tensor, n), make([][]float64, n)
		xs, xv := make([]backend.Buffer, n), make([][]float32, n)
		shared := randVec(rng, C, 1)
		xShared := put(t, be, shared)
		for j := range n {
			w, v := RandomWeight(rng, f, R, C, G)
			var err error
			ws[j], err = be.Register(w)
			must(t, err)
			vals[j] = v
			switch {
			case j < 3:
				xs[j], xv[j] = xShared, shared
			case j == 3:
				xv[j] = randVec(rng, C, 1)
				whole := put(t, be, append([]float32{0}, xv[j]...))
				xs[j], err = be.View(whole, 1, C)
				must(t, err)
			default:
				xv[j] = randVec(rng, C, 1)
				for i := range xv[j] {
					xv[j][i] = 3 + 0.1*xv[j][i] // a large common offset
				}
				xs[j] = put(t, be, xv[j])
			}
		}
		ys := make([]backend.Buffer, n)
		for j := range ys {
			ys[j] = alloc(t, be, R)
		}
		must(t, bt.MatVecBatch(ys, ws, xs))
		for j := range n {
			got := get(t, be, ys[j])
			check(t, fmt.Sprintf("%s job %d", name, j), got, refMatMul(vals[j], R, C, xv[j], 1), tolMatMul)
			y1 := alloc(t, be, R)
			must(t, be.MatMul(y1, ws[j], xs[j], 1))
			if i := FirstDiff(got, get(t, be, y1)); i >= 0 {
				t.Fatalf("%s job %d: row %d differs from MatMul's", name, j, i)
			}
		}
		for what, err := range map[string]error{
			"lengths": bt.MatVecBatch(ys[:2], ws, xs),
			"y short": bt.MatVecBatch([]backend.Buffer{alloc(t, be, R-1)}, ws[:1], xs[:1]),
		} {
			if err == nil {
				t.Errorf("%s: a batch with bad %s returned no error", name, what)
			}
		}
	}
}
