package tokenizer

import "math/bits"

// pairTable maps a pair of adjacent token ids to their merge. It replaces a
// map[uint64]merge: inserting ~150k merges into a Go map took a fifth of
// Load, and BPE probes it for every adjacent pair it considers. Linear
// probing over 16-byte slots keeps a probe to one cache line.
type pairTable struct {
	slots []pairSlot
	n     int
	sink  int32 // keeps touch's loads alive
	shift uint  // 64 - log2(len(slots))
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

func newPairTable(n int) *pairTable {
	logSize := max(bits.Len(uint(n+n/2)), 4) // load factor ≤ 2/3
	return &pairTable{slots: make([]pairSlot, 1<<logSize), shift: uint(64 - logSize), mask: 1<<logSize - 1}
}

// put sets the merge of a pair. A repeated pair takes its later rank, as
// when tokenizers collects the merges into a HashMap.
func (p *pairTable) put(key uint64, m merge) {
	if 3*(p.n+1) > 2*len(p.slots) {
		p.grow()
	}
	for i := p.home(key); ; i = (i + 1) & p.mask {
		s := &p.slots[i]
		if s.rank1 == 0 || s.key == key {
			if s.rank1 == 0 {
				p.n++
			}
			*s = pairSlot{key: key, rank1: m.rank + 1, token: m.token}
			return
		}
	}
}

// touch loads the home slots of a batch of keys (see prefetchBatch).
func (p *pairTable) touch(keys []uint64) {
	var x int32
	for _, k := range keys {
		x += p.slots[p.home(k)].rank1
	}
	p.sink += x
}

func (p *pairTable) grow() {
	bigger := newPairTable(len(p.slots))
	for _, s := range p.slots {
		if s.rank1 != 0 {
			bigger.put(s.key, merge{rank: s.rank1 - 1, token: s.token})
		}
	}
	*p = *bigger
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
