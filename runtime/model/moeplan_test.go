package model

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// group must give what the map-based grouping it replaced gave: experts in
// ascending order, each with its tokens in ascending order and their weights,
// laid out one expert after another.
func TestMoePlanGroup(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var p moePlan
	for _, c := range []struct{ T, E, K int }{{1, 8, 2}, {1, 512, 10}, {7, 16, 4}, {64, 32, 8}, {3, 4, 4}} {
		p.reset(c.T, c.E, c.K)
		rows := map[int][]int{}
		weights := map[int][]float32{}
		for tok := 0; tok < c.T; tok++ {
			for j, e := range rng.Perm(c.E)[:c.K] {
				i := tok*c.K + j
				p.idx[i], p.wts[i] = e, rng.Float32()
				rows[e] = append(rows[e], tok)
				weights[e] = append(weights[e], p.wts[i])
			}
		}
		p.group(c.K)
		var want []int
		for e := range rows {
			want = append(want, e)
		}
		slices.Sort(want)
		if !slices.Equal(p.ids, want) {
			t.Fatalf("%+v: ids %v, want %v", c, p.ids, want)
		}
		next := 0
		for _, e := range want {
			tr, first := p.expert(e)
			if first != next || !slices.Equal(tr, rows[e]) || !slices.Equal(p.w[first:first+len(tr)], weights[e]) {
				t.Fatalf("%+v: expert %d: rows %v at %d, want %v at %d", c, e, tr, first, rows[e], next)
			}
			next += len(tr)
		}
		if next != c.T*c.K {
			t.Fatalf("%+v: %d rows, want %d", c, next, c.T*c.K)
		}
	}
}
