package tokenizer

import "math/bits"

// pairTable maps a pair of adjacent token ids to their merge. It replaces a
// map[uint64]merge: inserting ~150k merges into a Go map took a fifth of
// Load, and BPE probes it for every adjacent pair it considers. Linear
// probing over 16-byte slots keeps a probe to one cache line.
type pairTable struct {
	slots []pairSlot
	shift uint // 64 - log2(len(slots))
	mask  uint64
}

type pairSlot struct {
	key   uint64 // pairKey(left, right)
	rank1 int32  // rank+1; 0 marks an empty slot
	token int32
}

// merge is the result of merging an adjacent pair of tokens.
type merge struct {
	rank  int32 // position in model.merges; lower merges first
	token int32 // id of the concatenated token
}

// pairKey packs two token ids into one key.
func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// home spreads keys with Fibonacci hashing: the ids are small and dense, so
// their low bits alone would cluster.
func (p *pairTable) home(key uint64) uint64 { return (key * 0x9E3779B97F4A7C15) >> p.shift }

// buildPairTable indexes keys[i] → merges[i]. A repeated pair takes its
// later rank, as when tokenizers collects the merges into a HashMap.
func buildPairTable(keys []uint64, merges []merge) *pairTable {
	logSize := max(bits.Len(uint(len(keys)+len(keys)/2)), 4) // load factor ≤ 2/3
	p := &pairTable{slots: make([]pairSlot, 1<<logSize), shift: uint(64 - logSize), mask: 1<<logSize - 1}
	type item struct {
		key uint64
		m   merge
	}
	items := make([]item, len(keys))
	for i, k := range keys {
		items[i] = item{k, merges[i]}
	}
	for _, it := range bucketSort(items, len(p.slots), func(it *item) uint64 { return p.home(it.key) }) {
		for j := p.home(it.key); ; j = (j + 1) & p.mask {
			s := &p.slots[j]
			if s.rank1 == 0 || s.key == it.key {
				*s = pairSlot{key: it.key, rank1: it.m.rank + 1, token: it.m.token}
				break
			}
		}
	}
	return p
}

func (p *pairTable) get(key uint64) (merge, bool) {
	for i := p.home(key); ; i = (i + 1) & p.mask {
		s := &p.slots[i]
		if s.rank1 == 0 {
			return merge{}, false
		}
		if s.key == key {
			return merge{rank: s.rank1 - 1, token: s.token}, true
		}
	}
}
