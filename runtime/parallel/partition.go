package parallel

import (
	"fmt"
	"slices"

	"github.com/fmoe/fmoe/runtime/routetrace"
)

// Placement says which device (rank) holds each routed expert:
// Owner[layer][expert] is a rank in [0, Devices).
type Placement struct {
	Devices int
	Owner   [][]int
}

// Partition places every expert of every layer on one of n devices so that
// the devices' total loads are as even as the greedy rule makes them:
// experts in decreasing load (ties: lower id first) each go to the device
// with the least load so far (ties: lower rank). This is the LPT rule,
// within 4/3 of the best possible maximum; it is deterministic, so every
// process given the same counts places alike. load[l][e] is how often
// expert e of layer l was routed to (a trace's counts, or counts gathered
// at run time); a layer with no counts at all is placed as if every expert
// weighed 1, which spreads them evenly by number.
func Partition(load [][]int64, n int) (*Placement, error) {
	if n < 1 {
		return nil, fmt.Errorf("parallel: partition over %d devices", n)
	}
	p := &Placement{Devices: n, Owner: make([][]int, len(load))}
	for l, row := range load {
		if len(row) == 0 {
			return nil, fmt.Errorf("parallel: layer %d has no experts to place", l)
		}
		w := make([]int64, len(row))
		var total int64
		for e, c := range row {
			if c < 0 {
				return nil, fmt.Errorf("parallel: layer %d expert %d has negative load %d", l, e, c)
			}
			total += c
		}
		for e, c := range row {
			w[e] = c
			if total == 0 {
				w[e] = 1
			}
		}
		p.Owner[l] = greedy(w, n)
	}
	return p, nil
}

// greedy is the LPT assignment of one layer.
func greedy(w []int64, n int) []int {
	order := make([]int, len(w))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case w[a] > w[b]:
			return -1
		case w[a] < w[b]:
			return 1
		}
		return 0
	})
	owner := make([]int, len(w))
	sum := make([]int64, n)
	cnt := make([]int, n) // breaks load ties by expert count, so zero-load experts spread too
	for _, e := range order {
		best := 0
		for d := 1; d < n; d++ {
			if sum[d] < sum[best] || sum[d] == sum[best] && cnt[d] < cnt[best] {
				best = d
			}
		}
		owner[e] = best
		sum[best] += w[e]
		cnt[best]++
	}
	return owner
}

// Uniform counts every expert of every layer once: Partition then spreads
// them evenly by number, for a model run without a trace.
func Uniform(layers, experts int) [][]int64 {
	load := make([][]int64, layers)
	for l := range load {
		load[l] = make([]int64, experts)
	}
	return load
}

// TraceLoad counts, per layer and expert, the picks of a routing trace
// (runtime/routetrace; fmoe-pack route-trace writes one).
func TraceLoad(tr *routetrace.Trace) [][]int64 {
	load := Uniform(tr.Layers, tr.Experts)
	for t := 0; t < tr.Tokens; t++ {
		for l := 0; l < tr.Layers; l++ {
			ids, _ := tr.At(t, l)
			for _, e := range ids {
				load[l][e]++
			}
		}
	}
	return load
}

// Check reports whether p places every expert of a model with the given
// layers and experts per layer on a device in [0, p.Devices).
func (p *Placement) Check(layers, experts int) error {
	if len(p.Owner) != layers {
		return fmt.Errorf("parallel: placement covers %d layers, the model has %d", len(p.Owner), layers)
	}
	for l, row := range p.Owner {
		if len(row) != experts {
			return fmt.Errorf("parallel: placement of layer %d covers %d experts, the model has %d", l, len(row), experts)
		}
		for e, d := range row {
			if d < 0 || d >= p.Devices {
				return fmt.Errorf("parallel: layer %d expert %d placed on device %d of %d", l, e, d, p.Devices)
			}
		}
	}
	return nil
}

// Loads is the total load each device carries under p (for reports and tests).
func (p *Placement) Loads(load [][]int64) []int64 {
	sum := make([]int64, p.Devices)
	for l, row := range load {
		for e, c := range row {
			sum[p.Owner[l][e]] += c
		}
	}
	return sum
}
