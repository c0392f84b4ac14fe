//go:build linux && cgo

package cuda

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// TestRegisterRows: the whole of weights registered as rows computes, for
// one token, each part's own matvec bit for bit, one after the other; each
// part alone computes what the weight registered alone does, for one and
// several tokens; mismatched parts are refused.
func TestRegisterRows(t *testing.T) {
	be := newOrSkip(t)
	defer be.Close()
	rng := rand.New(rand.NewPCG(9, 4))
	for _, c := range []struct {
		f    backend.Format
		rows []int
		C, G int
	}{
		{backend.Q4, []int{1536, 1024, 32, 32}, 4096, 64}, // a GatedDeltaNet's in-projections, scaled down
		{backend.Q4, []int{1024, 1024}, 4096, 64},         // a shared expert's gate and up
		{backend.Q8, []int{512, 1}, 2048, 64},             // a router and a shared-expert gate
		{backend.BF16, []int{40, 24}, 256, 0},
	} {
		var ws []backend.Weight
		for _, r := range c.rows {
			w, _ := backendtest.RandomWeight(rng, c.f, r, c.C, c.G)
			ws = append(ws, w)
		}
		whole, parts, err := be.RegisterRows(ws)
		if err != nil {
			t.Fatalf("%v %v: %v", c.f, c.rows, err)
		}
		x := make([]float32, 3*c.C)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		var want1 []float32
		for i, w := range ws {
			alone := runMatMul(t, be, w, x[:c.C], 1, w.Rows)
			want1 = append(want1, alone...)
			want3 := runMatMul(t, be, w, x, 3, w.Rows)
			if got := runTensor(t, be, parts[i], x, 3, w.Rows); len(got) != len(want3) || sameBits(got, want3) >= 0 {
				t.Errorf("%v %v: part %d differs from its weight registered alone", c.f, c.rows, i)
			}
		}
		if got := runTensor(t, be, whole, x[:c.C], 1, len(want1)); len(got) != len(want1) || sameBits(got, want1) >= 0 {
			t.Errorf("%v %v: the whole differs from its parts one after the other", c.f, c.rows)
		}
	}
	a, _ := backendtest.RandomWeight(rng, backend.Q4, 8, 256, 64)
	b, _ := backendtest.RandomWeight(rng, backend.Q8, 8, 256, 64)
	if _, _, err := be.RegisterRows([]backend.Weight{a, b}); err == nil || !strings.Contains(err.Error(), "part 1") {
		t.Errorf("Q4 and Q8 parts: err %v, want a refusal naming part 1", err)
	}
	odd, _ := backendtest.RandomWeight(rng, backend.BF16, 3, 18, 0) // 108-byte rows: part 1 at byte 324
	if _, _, err := be.RegisterRows([]backend.Weight{odd, odd}); err == nil || !strings.Contains(err.Error(), "16-byte") {
		t.Errorf("unaligned second part: err %v, want the 16-byte refusal", err)
	}
}

// runTensor is runMatMul on an already registered tensor.
func runTensor(t *testing.T, be backend.Backend, wt backend.Tensor, x []float32, T, R int) []float32 {
	t.Helper()
	xb, _ := be.Alloc(len(x))
	yb, _ := be.Alloc(T * R)
	if err := be.Write(xb, x); err != nil {
		t.Fatal(err)
	}
	if err := be.MatMul(yb, wt, xb, T); err != nil {
		t.Fatal(err)
	}
	y := make([]float32, T*R)
	if err := be.Read(y, yb); err != nil {
		t.Fatal(err)
	}
	return y
}
