package parallel

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fmoe/fmoe/runtime/routetrace"
)

// layerLoads is each device's load in layer l.
func layerLoads(p *Placement, load [][]int64, l int) []int64 {
	sum := make([]int64, p.Devices)
	for e, c := range load[l] {
		sum[p.Owner[l][e]] += c
	}
	return sum
}

// best is the smallest possible maximum device load of w over n devices (brute force).
func best(w []int64, n int) int64 {
	sum := make([]int64, n)
	res := int64(-1)
	var rec func(i int)
	rec = func(i int) {
		if i == len(w) {
			m := slices.Max(sum)
			if res < 0 || m < res {
				res = m
			}
			return
		}
		for d := 0; d < n; d++ {
			sum[d] += w[i]
			rec(i + 1)
			sum[d] -= w[i]
		}
	}
	rec(0)
	return res
}

// TestPartitionBalanced: on random skewed loads every expert is placed once
// on a device in range, the heaviest device carries at most the lightest
// plus the heaviest expert (the greedy rule's guarantee), and at most 4/3 of
// the optimum found by brute force on small layers.
func TestPartitionBalanced(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 200; trial++ {
		n := 2 + r.IntN(3)
		E := 1 + r.IntN(9)
		load := [][]int64{make([]int64, E)}
		for e := range load[0] {
			load[0][e] = int64(r.ExpFloat64() * 100) // skewed, as routers are
		}
		p, err := Partition(load, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Check(1, E); err != nil {
			t.Fatal(err)
		}
		sums := layerLoads(p, load, 0)
		hi, lo := slices.Max(sums), slices.Min(sums)
		if hi-lo > slices.Max(load[0]) {
			t.Fatalf("loads %v on %d devices: spread %d exceeds the heaviest expert %d", load[0], n, hi-lo, slices.Max(load[0]))
		}
		if opt := best(load[0], n); 3*hi > 4*opt {
			t.Fatalf("loads %v on %d devices: max %d, optimum %d (greedy must stay within 4/3)", load[0], n, hi, opt)
		}
	}
}

// TestPartitionBeatsIndexSplit: one hot expert per block of a by-index split
// is the case index placement handles worst; the greedy rule evens it.
func TestPartitionBeatsIndexSplit(t *testing.T) {
	load := [][]int64{{90, 80, 70, 60, 1, 1, 1, 1}}
	p, err := Partition(load, 2)
	if err != nil {
		t.Fatal(err)
	}
	got := layerLoads(p, load, 0)
	if slices.Max(got) != 152 { // {90,60,1,1} | {80,70,1,1}
		t.Fatalf("device loads %v, want 152 each (the index split gives 300 | 4)", got)
	}
}

// TestPartitionDeterministic: the same counts give the same placement, and
// ties go to the lower rank, so every process of a run agrees.
func TestPartitionDeterministic(t *testing.T) {
	load := [][]int64{{5, 5, 5, 5, 3, 3}, {0, 0, 0, 0, 0, 0, 0}}
	a, err := Partition(load, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Partition(load, 3)
	if !slices.EqualFunc(a.Owner, b.Owner, slices.Equal) {
		t.Fatalf("two partitions differ: %v vs %v", a.Owner, b.Owner)
	}
	if want := []int{0, 1, 2, 0, 1, 2}; !slices.Equal(a.Owner[0], want) {
		t.Errorf("layer 0: %v, want %v", a.Owner[0], want)
	}
	// A layer without counts spreads by number: 7 experts as 3, 2, 2.
	if got := layerLoads(a, [][]int64{nil, {1, 1, 1, 1, 1, 1, 1}}, 1); !slices.Equal(got, []int64{3, 2, 2}) {
		t.Errorf("uncounted layer: %v experts per device, want [3 2 2]", got)
	}
}

func TestPartitionErrors(t *testing.T) {
	if _, err := Partition(Uniform(1, 4), 0); err == nil {
		t.Error("0 devices accepted")
	}
	if _, err := Partition([][]int64{{1, -1}}, 2); err == nil {
		t.Error("a negative load accepted")
	}
	if _, err := Partition([][]int64{{}}, 2); err == nil {
		t.Error("a layer of no experts accepted")
	}
	p, _ := Partition(Uniform(2, 4), 2)
	if err := p.Check(3, 4); err == nil {
		t.Error("a placement of 2 layers checked for a model of 3")
	}
	if err := p.Check(2, 5); err == nil {
		t.Error("a placement of 4 experts checked for 5")
	}
	p.Owner[1][2] = 2
	if err := p.Check(2, 4); err == nil {
		t.Error("an expert on device 2 of 2 accepted")
	}
}

// TestTraceLoad counts a trace's picks per layer and expert.
func TestTraceLoad(t *testing.T) {
	tr, err := routetrace.New(routetrace.Header{Layers: 2, Experts: 4, K: 2, Tokens: 3})
	if err != nil {
		t.Fatal(err)
	}
	picks := [][]uint16{{0, 1}, {2, 3}, {0, 2}, {3, 2}, {0, 3}, {1, 2}} // (t, l) in order
	for i, ids := range picks {
		copy(tr.IDs[2*i:], ids)
	}
	want := [][]int64{{3, 1, 1, 1}, {0, 1, 3, 2}}
	if got := TraceLoad(tr); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("TraceLoad %v, want %v", got, want)
	}
}
