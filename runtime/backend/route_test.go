package backend

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestTopK: the k largest in decreasing order, ties to the lower index,
// against a stable sort, on values with many ties and on distinct ones.
func TestTopK(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct{ n, k, levels int }{{512, 10, 0}, {512, 4, 7}, {64, 64, 3}, {9, 1, 0}, {128, 16, 2}} {
		for range 50 {
			v := make([]float32, c.n)
			for i := range v {
				if c.levels > 0 {
					v[i] = float32(rng.IntN(c.levels))
				} else {
					v[i] = float32(rng.NormFloat64())
				}
			}
			want := make([]int, c.n)
			for i := range want {
				want[i] = i
			}
			slices.SortStableFunc(want, func(a, b int) int {
				switch {
				case v[a] > v[b]:
					return -1
				case v[a] < v[b]:
					return 1
				}
				return 0
			})
			got := make([]int, c.k)
			for i := range got {
				got[i] = -1 // what out held before must not be read
			}
			TopK(v, got)
			if !slices.Equal(got, want[:c.k]) {
				t.Fatalf("n=%d k=%d levels %d: got %v, want %v", c.n, c.k, c.levels, got, want[:c.k])
			}
		}
	}
}

// BenchmarkRoute is one token's routing on the host at the 397B's router
// shape (512 experts, K=10): a prompt's layer routes T of these.
func BenchmarkRoute(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	lg := make([][]float32, 64)
	for i := range lg {
		lg[i] = make([]float32, 512)
		for j := range lg[i] {
			lg[i][j] = float32(rng.NormFloat64())
		}
	}
	idx, w := make([]int, 10), make([]float32, 10)
	i := 0
	for b.Loop() {
		if err := Route(lg[i%len(lg)], 10, idx, w); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
