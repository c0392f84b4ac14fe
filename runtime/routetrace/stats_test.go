package routetrace

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// naiveLRU is the reference: a slice, most recent last.
type naiveLRU struct {
	size int
	s    []int
}

func (c *naiveLRU) Access(id int) bool {
	if c.size == 0 {
		return false
	}
	i := slices.Index(c.s, id)
	if i >= 0 {
		c.s = append(c.s[:i], c.s[i+1:]...)
	} else if len(c.s) == c.size {
		c.s = c.s[1:]
	}
	if c.size > 0 {
		c.s = append(c.s, id)
	}
	return i >= 0
}

// TestLRU: the linked-list LRU agrees with the naive one access by access.
func TestLRU(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 3, 16, 40} {
		a, b := NewLRU(size, 40), &naiveLRU{size: size}
		for i := 0; i < 5000; i++ {
			id := r.IntN(40)
			if r.IntN(3) == 0 {
				id = r.IntN(5) // a hot few
			}
			if x, y := a.Access(id), b.Access(id); x != y {
				t.Fatalf("size %d access %d (id %d): LRU says %v, reference %v", size, i, id, x, y)
			}
		}
	}
}

// A hand-made trace: 1 layer, 8 experts, K=2.
func handTrace(t *testing.T) *Trace {
	tr, err := New(Header{Layers: 2, Experts: 8, K: 2, Tokens: 4, Model: "recorded"})
	if err != nil {
		t.Fatal(err)
	}
	// layer 0: {0,1} {1,2} {0,1} {3,4}; layer 1: {5,6} each token
	l0 := [][2]uint16{{0, 1}, {1, 2}, {0, 1}, {3, 4}}
	for tk := range 4 {
		ids, w := tr.At(tk, 0)
		copy(ids, l0[tk][:])
		w[0], w[1] = 0.75, 0.25
		ids, w = tr.At(tk, 1)
		ids[0], ids[1] = 5, 6
		w[0], w[1] = 0.5, 0.5
	}
	return tr
}

func TestStatsHand(t *testing.T) {
	tr := handTrace(t)
	// LRU of 2 on layer 0: 0m 1m | 1h 2m(evicts 0) | 0m(evicts 1) 1m(evicts 2) | 3m 4m → 1 hit of 8
	// LRU of 3: 0m 1m | 1h 2m | 0h 1h | 3m(evicts 2) 4m(evicts 0) → 3 of 8
	for _, c := range []struct {
		size int
		want float64
	}{{2, 1.0 / 8}, {3, 3.0 / 8}, {8, 3.0 / 8}} {
		if got := SimulateLRU(tr, c.size, 0, 4)[0]; got != c.want {
			t.Errorf("LRU %d: %v, want %v", c.size, got, c.want)
		}
	}
	if got := SimulateLRU(tr, 3, 2, 4)[0]; got != 2.0/4 {
		t.Errorf("LRU 3 over tokens 2-3 (warm): %v, want 0.5", got)
	}
	if got := SimulateLRU(tr, 2, 0, 4)[1]; got != 6.0/8 {
		t.Errorf("layer 1: %v, want 0.75", got)
	}
	// overlaps on layer 0: 1, 1, 0 of K=2 → 1/3
	if got := Overlap(tr, 4); got[0] != 1.0/3 || got[1] != 1 {
		t.Errorf("overlap %v, want [1/3 1]", got)
	}
	// windows of 2 tokens: {0,1,2} and {0,1,3,4} → (3+4)/2/8
	if got := Distinct(tr, 2, 4); got[0] != 7.0/16 || got[1] != 2.0/8 {
		t.Errorf("distinct %v, want [7/16 1/4]", got)
	}
	if s := tr.Stream(0); !slices.Equal(s, []int{0, 1, 1, 2, 0, 1, 3, 4}) {
		t.Errorf("stream %v", s)
	}
	t2, _ := tr.TopK(1)
	if ids, w := t2.At(1, 0); ids[0] != 1 || w[0] != 1 {
		t.Errorf("top 1 of token 1: %v %v, want [1] [1]", ids, w)
	}
	if _, err := tr.TopK(3); err == nil {
		t.Error("TopK(3) of K=2: no error")
	}
}

func TestCheckAndChoose(t *testing.T) {
	tr := handTrace(t)
	if err := tr.Check(2, 8, 2, 4); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		l, e, k, n int
		want       string
	}{
		{3, 8, 2, 4, "2 layers, the model 3"},
		{2, 16, 2, 4, "8 experts per layer, the model 16"},
		{2, 8, 4, 4, "K=2 experts per token, the model runs with K=4"},
		{2, 8, 2, 5, "covers 4 token positions, the run needs 5"},
	} {
		if err := tr.Check(c.l, c.e, c.k, c.n); err == nil || !contains(err.Error(), c.want) {
			t.Errorf("Check(%d, %d, %d, %d): %v, want %q", c.l, c.e, c.k, c.n, err, c.want)
		}
	}
	idx, w := make([]int, 2), make([]float32, 2)
	if err := tr.Choose(0, 3, idx, w); err != nil || idx[0] != 3 || idx[1] != 4 || w[0] != 0.75 {
		t.Errorf("Choose(0, 3): %v %v %v", idx, w, err)
	}
	if err := tr.Choose(0, 4, idx, w); err == nil {
		t.Error("Choose past the end: no error")
	}
	if err := tr.Choose(0, 0, make([]int, 3), make([]float32, 3)); err == nil {
		t.Error("Choose with K=3: no error")
	}
}
