package cpu

import (
	"math/rand/v2"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// TestMatVecThreadsBits: a one-token MatMul and a MatVecBatch compute the
// same bits on any number of threads. The threads take chunks of rows from
// a counter (pool.runShared), so which thread computes a row changes from
// run to run; a row's bits must not. Shapes: a 397B expert's gate (rows a
// multiple of 4) and rows that are not (the tail a kernel finishes alone).
func TestMatVecThreadsBits(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 27))
	for _, shape := range [][2]int{{1024, 4096}, {4096, 1024}, {1030, 512}} {
		R, C := shape[0], shape[1]
		for _, f := range []backend.Format{backend.Q4, backend.Q2, backend.Q8} {
			w, _ := backendtest.RandomWeight(r, f, R, C, 64)
			x := make([]float32, C)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			var want []float32
			for _, th := range []int{1, 2, 7, 16} {
				be := New(Options{Threads: th})
				got := matvecBoth(t, be, w, x)
				be.Close()
				if want == nil {
					want = got
					continue
				}
				if i := backendtest.FirstDiff(got, want); i >= 0 {
					t.Fatalf("%v %dx%d, %d threads: element %d (MatMul then MatVecBatch) is %v, on one thread %v", f, R, C, th, i, got[i], want[i])
				}
			}
		}
	}
}

// matvecBoth is MatMul's y followed by MatVecBatch's for two jobs of w.
func matvecBoth(t *testing.T, be *Backend, w backend.Weight, x []float32) []float32 {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	wt, err := be.Bind(w)
	must(err)
	xb, err := be.Alloc(len(x))
	must(err)
	must(be.Write(xb, x))
	R := w.Rows
	ys := make([]backend.Buffer, 3)
	for i := range ys {
		ys[i], err = be.Alloc(R)
		must(err)
	}
	must(be.MatMul(ys[0], wt, xb, 1))
	must(be.MatVecBatch(ys[1:], []backend.Tensor{wt, wt}, []backend.Buffer{xb, xb}))
	out := make([]float32, 0, 3*R)
	for i, y := range ys {
		h := make([]float32, R)
		must(be.Read(h, y))
		if i > 0 {
			if j := backendtest.FirstDiff(h, out[:R]); j >= 0 {
				t.Fatalf("%s: MatVecBatch job %d row %d is %v, MatMul's %v", be.Name(), i, j, h[j], out[j])
			}
		}
		out = append(out, h...)
	}
	return out
}
