package backendtest

import (
	"math"
	"slices"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
)

// testAddRMSNorm checks backend.AddNormer where a backend has it: h += r
// then the norm, bit for bit what Add and RMSNorm compute on the same
// backend (the model swaps one for the other), and within the norm's
// tolerance of float64.
func testAddRMSNorm(t *testing.T, be backend.Backend) {
	an, ok := be.(backend.AddNormer)
	if !ok {
		t.Skip("the backend does not fuse the residual add into the norm")
	}
	rng := newRNG("addnorm")
	for _, c := range []struct {
		name     string
		T, n     int
		weighted bool
	}{
		{"rows", 3, 200, true},
		{"no weight", 2, 64, false},
		{"hidden size", 2, 4100, true}, // unrolled loads, then a remainder
	} {
		h0 := randVec(rng, c.T*c.n, 2)
		r := randVec(rng, c.T*c.n, 1)
		var wt backend.Tensor
		var w []float32
		if c.weighted {
			w = randVec(rng, c.n, 1)
			var err error
			wt, err = be.Register(DenseF32(1, c.n, w))
			must(t, err)
		}
		l := backend.Rows(c.T, c.n)
		rb := put(t, be, r)
		// Fused.
		hf, yf := put(t, be, h0), alloc(t, be, c.T*c.n)
		must(t, an.AddRMSNorm(yf, hf, rb, l, wt, 1e-6))
		// Add, then RMSNorm.
		hs, ys := put(t, be, h0), alloc(t, be, c.T*c.n)
		must(t, be.Add(hs, rb))
		must(t, be.RMSNorm(ys, hs, l, wt, 1e-6))
		// A backend whose RMSNorm is not reproducible from one launch to the
		// next (the Metal simulator's perturbed math) is held to the
		// tolerance below; any other to the bits.
		ys2 := alloc(t, be, c.T*c.n)
		must(t, be.RMSNorm(ys2, hs, l, wt, 1e-6))
		gh, gy, wh, wy := get(t, be, hf), get(t, be, yf), get(t, be, hs), get(t, be, ys)
		exact := slices.Equal(wy, get(t, be, ys2))
		for i := range gh {
			if math.Float32bits(gh[i]) != math.Float32bits(wh[i]) || exact && math.Float32bits(gy[i]) != math.Float32bits(wy[i]) {
				t.Fatalf("%s: element %d: fused h %v y %v, Add then RMSNorm h %v y %v", c.name, i, gh[i], gy[i], wh[i], wy[i])
			}
		}
		sum := make([]float32, len(h0))
		for i := range sum {
			sum[i] = h0[i] + r[i]
		}
		check(t, c.name, gy, refRMSNorm(sum, l, w, 1e-6, nil), tolElem)
	}
}
