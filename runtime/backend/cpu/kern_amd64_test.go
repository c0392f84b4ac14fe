//go:build amd64 && !purego

package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// The 2-bit AVX-512 kernel without its four-row pass (round 3's), beside
// the kept one in the kernel benchmarks.
func init() {
	benchAlts = append(benchAlts, benchAlt{backend.Q2, isaAVX512, "pair", func() func() {
		old := asmKernels[isaAVX512][backend.Q2]
		asmKernels[isaAVX512][backend.Q2] = kQ2AVX512Pair
		return func() { asmKernels[isaAVX512][backend.Q2] = old }
	}})
}

// q2Rows4AVX512 against float64 and against the kernel without it, over
// row counts that leave 0-3 rows to the pair and single-row kernels and
// group counts whose bias pass takes whole vectors of 16 groups, a masked
// tail, or both; zero-mean and offset activations. Each error (relative,
// L2 over the rows) must stay under 1e-6, far inside the conformance
// suite's 2e-5, and their mean within 1.25× the pair kernel's: the four-row
// kernel sums the same float32 products in another order (two partial sums
// a row instead of four, the bias terms 16 lanes wide), so its error is of
// the same order, u·√n times the cancellation ratio. (Single cases of a
// few rows scatter by 3× either way.)
func TestQ2Rows4(t *testing.T) {
	if bestISA < isaAVX512 {
		t.Skip("no AVX-512")
	}
	rng := rand.New(rand.NewPCG(11, 12))
	var sum [2]float64
	n := 0
	for _, R := range []int{4, 5, 6, 7, 8, 13, 64} {
		for _, ng := range []int{4, 8, 12, 16, 20, 28, 32, 36, 64, 68} {
			for _, offset := range []bool{false, true} {
				C := 64 * ng
				w, vals := backendtest.RandomWeight(rng, backend.Q2, R, C, 64)
				x := make([]float32, C)
				for i := range x {
					x[i] = float32(rng.NormFloat64())
					if offset {
						x[i] = 3 + 0.1*x[i]
					}
				}
				want := make([]float64, R)
				for r := range want {
					for c := 0; c < C; c++ {
						want[r] += vals[r*C+c] * float64(x[c])
					}
				}
				var errs [2]float64
				for i, k := range []*asmAffine{kQ2AVX512, kQ2AVX512Pair} {
					be := New(Options{Threads: 1})
					be.isa = isaAVX512
					asmKernels[isaAVX512][backend.Q2] = k
					got := make([]float32, R)
					be.matmul(got, &w, x, 1)
					be.Close()
					errs[i] = relErr64(got, want)
				}
				asmKernels[isaAVX512][backend.Q2] = kQ2AVX512
				name := fmt.Sprintf("%d×%d offset=%v", R, C, offset)
				if errs[0] > 1e-6 {
					t.Errorf("%s: four-row error %.3g, pair %.3g", name, errs[0], errs[1])
				}
				sum[0] += errs[0]
				sum[1] += errs[1]
				n++
			}
		}
	}
	t.Logf("mean relative error over %d cases: four-row %.3g, pair %.3g", n, sum[0]/float64(n), sum[1]/float64(n))
	if sum[0] > 1.25*sum[1] {
		t.Errorf("four-row kernel's mean error %.3g against the pair kernel's %.3g", sum[0]/float64(n), sum[1]/float64(n))
	}
}

// relErr64 is ‖got − want‖/‖want‖.
func relErr64(got []float32, want []float64) float64 {
	var d, n float64
	for i, v := range want {
		e := float64(got[i]) - v
		d += e * e
		n += v * v
	}
	return math.Sqrt(d / n)
}

// q2PrepAVX512 against the Go re-order (the same values, moved) and group
// sums (another order: within a few units in the last place of Σ|x|).
func TestQ2PrepAVX512(t *testing.T) {
	if bestISA < isaAVX512 {
		t.Skip("no AVX-512")
	}
	rng := rand.New(rand.NewPCG(13, 14))
	for _, ng := range []int{4, 5, 7, 8, 13, 64, 66} {
		C := 64 * ng
		w, _ := backendtest.RandomWeight(rng, backend.Q2, 4, C, 64)
		const T = 3
		x := make([]float32, T*C)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		var fast, slow prepared
		kQ2AVX512.prep(&w, x, T, &fast)
		kQ2AVX512Pair.prep(&w, x, T, &slow)
		if fast.ng != slow.ng || len(fast.xt) != len(slow.xt) || len(fast.sx) != len(slow.sx) {
			t.Fatalf("%d groups: shapes differ", ng)
		}
		for i := range slow.xt {
			if fast.xt[i] != slow.xt[i] {
				t.Fatalf("%d groups: xt[%d] = %v, want %v", ng, i, fast.xt[i], slow.xt[i])
			}
		}
		for i := range slow.sx {
			var mag float64
			tok, g := i/ng, i%ng
			for _, v := range x[tok*C+64*g : tok*C+64*g+64] {
				mag += math.Abs(float64(v))
			}
			if d := math.Abs(float64(fast.sx[i] - slow.sx[i])); d > 8*0x1p-24*mag {
				t.Fatalf("%d groups: sx[%d] = %v, want %v", ng, i, fast.sx[i], slow.sx[i])
			}
		}
	}
}
