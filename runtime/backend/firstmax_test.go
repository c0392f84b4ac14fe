package backend

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestFirstMaxLanes: backend.FirstMax's four-lane maximum against one running maximum
// (a plain running maximum (firstMaxRef)) on every length up to 21, with ties, infinities
// and NaNs placed at random, NaN at index 0 included.
func TestFirstMaxLanes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	pool := []float32{0, 1, 2, 2, -1, inf, -inf, nan}
	for n := 1; n <= 21; n++ {
		for trial := 0; trial < 300; trial++ {
			v := make([]float32, n)
			for i := range v {
				v[i] = pool[rng.IntN(len(pool))]
			}
			if got, want := FirstMax(v), firstMaxRef(v); got != want {
				t.Fatalf("FirstMax(%v) = %d, want %d", v, got, want)
			}
		}
	}
}

// firstMaxRef is one running maximum: the definition FirstMax keeps.
func firstMaxRef(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// TestAllFinite: the branchless check finds a NaN or an infinity at every
// position of the 4-wide loop and its tail, and passes the extreme finite
// values, from an 8-byte boundary and off it.
func TestAllFinite(t *testing.T) {
	finite := []float32{0, float32(math.Copysign(0, -1)), math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 1e-40, -3}
	for n := 0; n <= 23; n++ {
		// From every offset of a buffer: the pairs' 8-byte grid.
		v := make([]float32, n+1)[(n/2)%2:] // every pairing of parity and offset
		v = v[:n]
		for i := range v {
			v[i] = finite[i%len(finite)]
		}
		if !AllFinite(v) {
			t.Fatalf("%d finite values: reported not finite", n)
		}
		for i := range v {
			for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
				old := v[i]
				v[i] = bad
				if AllFinite(v) {
					t.Fatalf("%v at %d of %d: reported finite", bad, i, n)
				}
				v[i] = old
			}
		}
	}
}

// TestAllFiniteAlone: one to three values at the end of their allocation,
// from an 8-byte boundary and 4 bytes off it: with an off-grid first value
// taken alone, fewer than two may be left, and they are checked without a
// pointer past the allocation (checkptr under -race refused one before the
// fix, in the conformance suite's one-value ArgMax).
func TestAllFiniteAlone(t *testing.T) {
	for n := 1; n <= 3; n++ {
		for off := range 2 {
			// A 16-byte allocation (its own size class, not the tiny
			// allocator's shared blocks), its last n values less off.
			heapSink = make([]float32, 4) // on the heap, where checkptr looks
			v := heapSink[4-n-off : 4-off]
			if !AllFinite(v) {
				t.Fatalf("%d zeros at offset %d: reported not finite", n, off)
			}
			for i := range v {
				v[i] = float32(math.Inf(-1))
				if AllFinite(v) {
					t.Fatalf("-Inf at %d of %d at offset %d: reported finite", i, n, off)
				}
				v[i] = 0
			}
		}
	}
}

// heapSink keeps TestAllFiniteAlone's values off the stack.
var heapSink []float32

// BenchmarkAllFinite: the logits check over Qwen3.5's 248,320 values, once a token.
func BenchmarkAllFinite(b *testing.B) {
	v := make([]float32, 248320)
	for i := range v {
		v[i] = float32(i%97) - 40
	}
	for b.Loop() {
		if !AllFinite(v) {
			b.Fatal("finite values reported not finite")
		}
	}
}
