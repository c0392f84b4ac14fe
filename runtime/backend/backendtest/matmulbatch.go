package backendtest

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
)

// testMatMulBatch checks backend.MatMulBatcher where a backend has it: each
// job within MatMul's tolerance of float64, and its bits its own: the same
// when it runs alone or with the batch reversed (the model computes cache
// hits in one batch and misses one at a time, and a warm cache must not
// change a logit). Jobs of one row, a tile's tail and several tiles, an x
// with a large offset, an x that starts one value into its buffer (a
// kernel reading x in 16-byte vectors must not take it as it is), and a
// weight of another shape among them.
func testMatMulBatch(t *testing.T, be backend.Backend) {
	mb, ok := be.(backend.MatMulBatcher)
	if !ok {
		t.Skip("the backend has no batched matmul")
	}
	const C = 256
	Ts := []int{5, 70, 1, 17, 130, 9}
	Rs := []int{200, 200, 200, 200, 200, 72} // the last job's weight has another shape
	for _, c := range []struct {
		f backend.Format
		G int
	}{{backend.Q4, 64}, {backend.Q8, 128}, {backend.BF16, 0}, {backend.F32, 0}} {
		name := fmt.Sprintf("%v/g%d", c.f, c.G)
		rng := newRNG("matmulbatch" + name)
		n := len(Ts)
		ws, vals := make([]backend.Tensor, n), make([][]float64, n)
		xs, xv := make([]backend.Buffer, n), make([][]float32, n)
		for j, T := range Ts {
			w, v := RandomWeight(rng, c.f, Rs[j], C, c.G)
			var err error
			ws[j], err = be.Register(w)
			must(t, err)
			vals[j] = v
			xv[j] = randVec(rng, T*C, 1)
			if j == 1 {
				for i := range xv[j] {
					xv[j][i] = 3 + 0.1*xv[j][i]
				}
			}
			if j == 3 {
				whole := put(t, be, append([]float32{0}, xv[j]...))
				xs[j], err = be.View(whole, 1, T*C)
				must(t, err)
				continue
			}
			xs[j] = put(t, be, xv[j])
		}
		ys := func(order []int) []backend.Buffer {
			out := make([]backend.Buffer, n)
			for _, j := range order {
				out[j] = alloc(t, be, Ts[j]*Rs[j])
			}
			return out
		}
		all := []int{0, 1, 2, 3, 4, 5}
		y := ys(all)
		must(t, mb.MatMulBatch(y, ws, xs, Ts))
		got := make([][]float32, n)
		for j, T := range Ts {
			got[j] = get(t, be, y[j])
			R := Rs[j]
			want := refMatMul(vals[j], R, C, xv[j], T)
			for tt := 0; tt < T; tt++ {
				check(t, fmt.Sprintf("%s job %d (T=%d) token %d", name, j, T, tt), got[j][tt*R:(tt+1)*R], want[tt*R:(tt+1)*R], tolMatMul)
			}
		}
		// Reversed, then each job alone: the same bits.
		rev := slices.Clone(all)
		slices.Reverse(rev)
		yr := ys(all)
		pick := func(s []backend.Buffer) []backend.Buffer {
			out := make([]backend.Buffer, n)
			for i, j := range rev {
				out[i] = s[j]
			}
			return out
		}
		ts := make([]backend.Tensor, n)
		Tr := make([]int, n)
		for i, j := range rev {
			ts[i], Tr[i] = ws[j], Ts[j]
		}
		must(t, mb.MatMulBatch(pick(yr), ts, pick(xs), Tr))
		for j := range Ts {
			ya := alloc(t, be, Ts[j]*Rs[j])
			must(t, mb.MatMulBatch([]backend.Buffer{ya}, ws[j:j+1], xs[j:j+1], Ts[j:j+1]))
			for what, b := range map[string]backend.Buffer{"reversed": yr[j], "alone": ya} {
				if i := FirstDiff(get(t, be, b), got[j]); i >= 0 {
					t.Fatalf("%s job %d: %s, value %d differs from the batch's", name, j, what, i)
				}
			}
		}
		// Bad batches are errors, not launches.
		for what, err := range map[string]error{
			"lengths": mb.MatMulBatch(y[:2], ws, xs, Ts),
			"x short": mb.MatMulBatch(y[:2], ws[:2], []backend.Buffer{xs[0], xs[0]}, Ts[:2]),
			"no rows": mb.MatMulBatch(y[:1], ws[:1], xs[:1], []int{0}),
		} {
			if err == nil {
				t.Errorf("%s: a batch with bad %s returned no error", name, what)
			}
		}
	}
}

// FirstDiff is the first index where a and b differ bit for bit, or -1
// (a length mismatch differs at the shorter length).
func FirstDiff(a, b []float32) int {
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}
