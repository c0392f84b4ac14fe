package hub

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Streaming a pack while downloading keeps only a window of source shards on disk: a shard
// can go once every unit of output that reads from it is written. How big the window must be
// depends on how the checkpoint's index spreads tensors over shards and on what counts as a
// unit of output. ShardWindow measures it for three packing orders.

// Order is how a streaming pack would consume tensors.
type Order int

const (
	// OrderBlock packs each unit as soon as its shards are present: one unit per expert (all
	// its projections), per fused or stacked expert tensor, and per dense tensor.
	OrderBlock Order = iota
	// OrderLayer packs a whole layer (dense tensors and experts) as soon as its shards are
	// present; tensors outside the layers are units of their own.
	OrderLayer
	// OrderConvert is fmoe-pack convert's order today: every dense tensor first, then the
	// experts layer by layer.
	OrderConvert
	// OrderInterleaved is today's order with dense and expert work interleaved by layer: the
	// embedding, then each layer's dense tensors and experts, then the final norm and lm_head.
	// model_weights.bin is written in the same order as today (the schema is layer by layer),
	// so the pack is byte for byte the same; only when each part is written changes.
	OrderInterleaved
)

func (o Order) String() string {
	return [...]string{"per block", "per layer", "convert today", "interleaved"}[o]
}

// Window is the disk a streaming pack needs for source shards under one order.
type Window struct {
	Order      Order
	PeakBytes  int64 // shards on disk at the worst moment (just after a shard arrives)
	PeakShards int
	TotalBytes int64 // the whole download, for comparison
	Shards     int
}

var (
	layerRe  = regexp.MustCompile(`(?:^|\.)layers\.(\d+)\.`)
	expertRe = regexp.MustCompile(`\.experts\.(\d+)\.`)
	fusedRe  = regexp.MustCompile(`\.(experts|switch_mlp)\.`)
)

// unitOf names the unit of output tensor belongs to under order o. A matrix is one unit
// with its quantisation scales and biases (they are packed together); an expert is one unit
// with all its projections; stacked or fused expert tensors (experts.gate_up_proj,
// switch_mlp.*) make one unit per layer, since every expert block takes a slice of each.
func unitOf(tensor string, o Order) string {
	m := layerRe.FindStringSubmatch(tensor)
	if m == nil && o == OrderConvert {
		return "dense"
	}
	if m == nil && o == OrderInterleaved {
		if strings.Contains(tensor, "embed_tokens") {
			return "first"
		}
		return "last"
	}
	if m == nil {
		return "t:" + module(tensor)
	}
	layer := m[1]
	isExpert := fusedRe.MatchString(tensor)
	switch o {
	case OrderLayer, OrderInterleaved:
		return "L" + layer
	case OrderConvert:
		if !isExpert {
			return "dense"
		}
		return "L" + layer
	}
	if e := expertRe.FindStringSubmatch(tensor); e != nil {
		return "L" + layer + "/e" + e[1]
	}
	if isExpert {
		return "L" + layer + "/experts"
	}
	return "t:" + module(tensor)
}

// module strips the parameter suffix that quantised checkpoints split a matrix into.
func module(tensor string) string {
	i := strings.LastIndexByte(tensor, '.')
	if i < 0 {
		return tensor
	}
	switch tensor[i+1:] {
	case "weight", "scales", "biases", "bias", "weight_scale_inv", "weight_scale":
		return tensor[:i]
	}
	return tensor
}

// ShardWindow simulates a download that brings shards one at a time in name order (the order
// pull schedules them) and a pack that writes each unit once all its shards are present
// (under OrderConvert and OrderInterleaved, strictly in their sequence) and deletes a
// shard once all units reading it are written. sizes gives each shard's size in bytes.
func ShardWindow(weightMap map[string]string, sizes map[string]int64, o Order) (Window, error) {
	unitShards := map[string]map[string]bool{}
	shardUnits := map[string]map[string]bool{}
	for tensor, shard := range weightMap {
		if _, ok := sizes[shard]; !ok {
			return Window{}, fmt.Errorf("tensor %s is in shard %s, whose size is not known", tensor, shard)
		}
		u := unitOf(tensor, o)
		add(unitShards, u, shard)
		add(shardUnits, shard, u)
	}
	shards := make([]string, 0, len(sizes))
	w := Window{Order: o}
	for s, n := range sizes {
		if shardUnits[s] != nil {
			shards = append(shards, s)
			w.TotalBytes += n
		}
	}
	sort.Strings(shards)
	w.Shards = len(shards)
	sequence := convertSequence(unitShards)
	arrived, onDisk, written := map[string]bool{}, map[string]bool{}, map[string]bool{}
	var diskBytes int64
	for _, s := range shards {
		arrived[s], onDisk[s] = true, true
		diskBytes += sizes[s]
		if diskBytes > w.PeakBytes {
			w.PeakBytes, w.PeakShards = diskBytes, len(onDisk)
		}
		ready := func(u string) bool {
			for need := range unitShards[u] {
				if !arrived[need] {
					return false
				}
			}
			return true
		}
		if o == OrderConvert || o == OrderInterleaved {
			for len(sequence) > 0 && ready(sequence[0]) {
				written[sequence[0]] = true
				sequence = sequence[1:]
			}
		} else {
			for u := range unitShards {
				if !written[u] && ready(u) {
					written[u] = true
				}
			}
		}
		for d := range onDisk {
			if allWritten(shardUnits[d], written) {
				delete(onDisk, d)
				diskBytes -= sizes[d]
			}
		}
	}
	return w, nil
}

// convertSequence is the unit order of OrderConvert (the dense unit, then the layers) and
// OrderInterleaved (the embedding, the layers, then the rest), layers in numeric order.
func convertSequence(unitShards map[string]map[string]bool) []string {
	var seq []string
	for u := range unitShards {
		seq = append(seq, u)
	}
	rank := func(u string) (int, int, string) {
		var n int
		switch {
		case u == "dense" || u == "first":
			return 0, 0, u
		case len(u) > 1 && u[0] == 'L':
			fmt.Sscanf(u[1:], "%d", &n)
			return 1, n, u
		}
		return 2, 0, u
	}
	sort.Slice(seq, func(i, j int) bool {
		a1, a2, a3 := rank(seq[i])
		b1, b2, b3 := rank(seq[j])
		if a1 != b1 {
			return a1 < b1
		}
		if a2 != b2 {
			return a2 < b2
		}
		return a3 < b3
	})
	return seq
}

func add(m map[string]map[string]bool, k, v string) {
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][v] = true
}

func allWritten(units map[string]bool, written map[string]bool) bool {
	for u := range units {
		if !written[u] {
			return false
		}
	}
	return true
}
