//go:build (amd64 || arm64) && !purego

package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// TestConformanceAuto runs the best kernels; these run each level with
// assembly kernels the CPU has, so a machine with AVX-512 still tests the
// AVX2 kernels that machines without it will use.
func TestConformanceISA(t *testing.T) {
	for isa := isaFirstASM; isa <= bestISA; isa++ {
		t.Run(isaNames[isa], func(t *testing.T) {
			for _, th := range []int{1, 2} {
				t.Run(fmt.Sprintf("threads%d", th), func(t *testing.T) {
					backendtest.Run(t, func() backend.Backend {
						be := New(Options{Threads: th})
						be.isa = isa
						return be
					})
				})
			}
		})
	}
	if bestISA < len(isaNames)-1 {
		t.Logf("%s kernels not run (not on this CPU, or capped by FMOE_CPU_ISA)", isaNames[len(isaNames)-1])
	}
}

// Every kernel order is a permutation of a group's 64 columns.
func TestKernelOrders(t *testing.T) {
	for name, k := range affineKernels {
		for _, o := range [][]uint8{k.order, k.block} {
			seen := make([]bool, len(o))
			for _, c := range o {
				if int(c) >= len(o) || seen[c] {
					t.Fatalf("%s: order %v is not a permutation", name, o)
				}
				seen[c] = true
			}
		}
	}
}

// The bandwidth benchmarks' ceiling must read every byte.
func TestReadSum(t *testing.T) {
	b := make([]byte, 128*5)
	for i := range b {
		b[i] = byte(i * 7)
	}
	if got, want := readSum(b), readSumGo(b); got != want {
		t.Fatalf("readSum = %#x, readSumGo = %#x", got, want)
	}
	b[300] ^= 1
	if readSum(b) == readSumGo(b[:len(b)-128]) {
		t.Fatal("readSum ignores its input")
	}
}

func isaLevels() []int {
	var l []int
	for isa := bestISA; isa >= isaGo; isa-- {
		l = append(l, isa)
	}
	return l
}

// Rows of every group count from 1 to 9 reach each kernel's block loop,
// its single-group tail, and both in one row, for 2 and 9 tokens.
func TestKernelGroupCounts(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for isa := isaFirstASM; isa <= bestISA; isa++ {
		for _, f := range []backend.Format{backend.Q2, backend.Q4, backend.Q8, backend.BF16} {
			for ng := 1; ng <= 9; ng++ {
				R, C, T := 11, 64*ng, 2+7*(ng%2)
				w, _ := backendtest.RandomWeight(rng, f, R, C, 64)
				x := make([]float32, T*C)
				for i := range x {
					x[i] = float32(rng.NormFloat64())
				}
				want := make([]float32, T*R)
				ref := New(Options{Path: PathReference, Threads: 1})
				ref.matmul(want, &w, x, T)
				ref.Close()
				be := New(Options{Threads: 1})
				defer be.Close()
				be.isa = isa
				got := make([]float32, T*R)
				be.matmul(got, &w, x, T)
				for i := range got {
					if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*(1+math.Abs(float64(want[i]))) {
						t.Fatalf("%s %v %d groups: y[%d] = %v, reference %v", isaNames[isa], f, ng, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// dotVec, axpyVec, decayRead and updateRead against float64 for every
// length to 40 (the assembly's 16-wide loop, the Go tail, and both).
func TestDotAxpy(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for n := 0; n <= 40; n++ {
		a, b, y := make([]float32, n), make([]float32, n+3), make([]float32, n)
		for i := range a {
			a[i], y[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		for i := range b {
			b[i] = float32(rng.NormFloat64())
		}
		var want, mag float64
		for i := range a {
			want += float64(a[i]) * float64(b[i])
			mag += math.Abs(float64(a[i]) * float64(b[i]))
		}
		if got := dotVec(a, b); math.Abs(float64(got)-want) > 1e-6*(1+mag) {
			t.Fatalf("n=%d: dotVec = %v, want %v", n, got, want)
		}
		checkDeltaRows(t, a, b, y)
		const c = 0.37
		y0 := append([]float32(nil), y...)
		axpyVec(y, b, c)
		for i := range y {
			if w := float64(y0[i]) + c*float64(b[i]); math.Abs(float64(y[i])-w) > 1e-6*(1+math.Abs(w)) {
				t.Fatalf("n=%d: axpyVec y[%d] = %v, want %v", n, i, y[i], w)
			}
		}
	}
}

func checkDeltaRows(t *testing.T, row, mem, out []float32) {
	t.Helper()
	n := len(row)
	const g, k, q = 0.9, -0.55, 1.25
	r0, m0, o0 := append([]float32(nil), row...), append([]float32(nil), mem[:n]...), append([]float32(nil), out...)
	near := func(what string, i int, got float32, want float64) {
		if math.Abs(float64(got)-want) > 1e-6*(1+math.Abs(want)) {
			t.Fatalf("n=%d: %s[%d] = %v, want %v", n, what, i, got, want)
		}
	}
	decayRead(row, mem, g, k)
	for i := 0; i < n; i++ {
		r := float64(r0[i]) * g
		near("decayRead row", i, row[i], r)
		near("decayRead mem", i, mem[i], float64(m0[i])+r*k)
	}
	r1, m1 := append([]float32(nil), row...), append([]float32(nil), mem[:n]...)
	updateRead(row, mem, out, k, q)
	for i := 0; i < n; i++ {
		r := float64(r1[i]) + k*float64(m1[i])
		near("updateRead row", i, row[i], r)
		near("updateRead out", i, out[i], float64(o0[i])+r*q)
	}
}
