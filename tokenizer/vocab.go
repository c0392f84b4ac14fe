package tokenizer

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
)

// vocabIndex maps token strings to ids. Load resolves ~450k merge strings,
// and its cost is almost all cache misses: a Go map[string]int32 misses about
// three times per probe (control word, slot, key bytes). This open-addressing
// table keeps each key's first 8 bytes inline beside its id, so a short key
// (92% of merge halves) costs one miss; longer keys are confirmed against the
// token list. Bulk operations also go through the table in slot order (see
// bucketOrder), which turns random misses into a sequential sweep.
type vocabIndex struct {
	slots  []vocabSlot
	mask   uint64
	seed   maphash.Seed
	tokens []string // id → string; the index's own copy
	n      int
	filled chan struct{} // closed once fill is done
}

type vocabSlot struct {
	head uint64 // first 8 key bytes, little-endian, zero-padded
	// meta is the top 24 hash bits, the key length (8 bits, 255 = longer)
	// and id+1 (32 bits); 0 marks an empty slot.
	meta uint64
}

// keyInfo is what a probe needs to know about a key besides its bytes.
type keyInfo struct {
	hash, head uint64
	n          int
}

const tagMask = uint64(0xFFFFFFFF00000000)

func (k keyInfo) tag() uint64 { return k.hash>>40<<40 | uint64(min(k.n, 255))<<32 }

func (v *vocabIndex) info(key []byte) keyInfo {
	var b [8]byte
	copy(b[:], key)
	return keyInfo{hash: maphash.Bytes(v.seed, key), head: binary.LittleEndian.Uint64(b[:]), n: len(key)}
}

// infoString is info for a string; maphash gives both the same hash.
func (v *vocabIndex) infoString(key string) keyInfo {
	var b [8]byte
	copy(b[:], key)
	return keyInfo{hash: maphash.String(v.seed, key), head: binary.LittleEndian.Uint64(b[:]), n: len(key)}
}

// homeOf returns the slot a hash probes first.
func (v *vocabIndex) homeOf(h uint64) uint64 { return h & v.mask }

// newVocabIndex returns an empty index sized for n keys. Its hash seed and
// size are fixed, so keys can be hashed (info, homeOf) before fill is done.
func newVocabIndex(tokens []string, n int) *vocabIndex {
	size := max(1<<bits.Len(uint(n+n/2)), 16) // load factor ≤ 2/3
	return &vocabIndex{
		slots: make([]vocabSlot, size), mask: uint64(size - 1), seed: maphash.MakeSeed(),
		tokens: tokens, filled: make(chan struct{}),
	}
}

// fill indexes keys[i] → ids[i] and then marks the index ready. Load runs
// it concurrently with scanning the merges; lookups wait for it. A repeated
// key keeps its last id, as in serde's map, and its earlier id stops
// decoding, as with tokenizers' reversed map.
func (v *vocabIndex) fill(keys []string, ids []int32) {
	defer close(v.filled)
	tokens, size := v.tokens, len(v.slots)
	type item struct {
		k  keyInfo
		i  int32 // index into keys; no pointers, so the GC skips items
		id int32
	}
	items := make([]item, len(keys))
	for i, key := range keys {
		items[i] = item{k: v.infoString(key), i: int32(i), id: ids[i]}
	}
	for _, it := range bucketSort(items, size, func(it *item) uint64 { return v.homeOf(it.k.hash) }) {
		id, k := it.id, it.k
		for j := v.homeOf(k.hash); ; j = (j + 1) & v.mask {
			s := &v.slots[j]
			if s.meta == 0 {
				*s = vocabSlot{head: k.head, meta: k.tag() | uint64(uint32(id+1))}
				v.n++
				break
			}
			if s.meta&tagMask == k.tag() && s.head == k.head {
				// Only a repeated key (or a rare 24-bit hash collision)
				// gets here, so reading the key again costs nothing.
				if old, key := int32(uint32(s.meta))-1, keys[it.i]; k.n <= 8 || tokens[old] == key {
					s.meta = k.tag() | uint64(uint32(id+1))
					if old != id && tokens[old] == key {
						tokens[old] = ""
					}
					break
				}
			}
		}
	}
}

// wait blocks until fill is done; every lookup must come after it.
func (v *vocabIndex) wait() { <-v.filled }

// probe looks up a key given its info.
func (v *vocabIndex) probe(k keyInfo, key []byte) (int32, bool) {
	tag := k.tag()
	for i := v.homeOf(k.hash); ; i = (i + 1) & v.mask {
		s := &v.slots[i]
		if s.meta == 0 {
			return 0, false
		}
		if s.meta&tagMask == tag && s.head == k.head {
			if id := int32(uint32(s.meta)) - 1; k.n <= 8 || v.tokens[id] == string(key) {
				return id, true
			}
		}
	}
}

func (v *vocabIndex) getBytes(key []byte) (int32, bool) { return v.probe(v.info(key), key) }

func (v *vocabIndex) get(key string) (int32, bool) { return v.getBytes([]byte(key)) }

// token returns the string of id, or "" when there is none.
func (v *vocabIndex) token(id int32) string {
	if id < 0 || int(id) >= len(v.tokens) {
		return ""
	}
	return v.tokens[id]
}

// len returns the number of distinct tokens.
func (v *vocabIndex) len() int { return v.n }

// bucketSort returns items stably sorted by coarse table region: home(item)
// is a slot of a power-of-two table of the given size, and there are at most
// 1024 regions. Processing a bulk insert or lookup in that order confines
// each stretch of work to a few KB of the table and reads the items
// sequentially, so a bulk operation costs a sweep instead of a cache miss per
// key; that matters most on a busy machine, where misses are slow. Stability
// keeps file order among equal keys, so "last one wins" rules still hold.
func bucketSort[T any](items []T, size int, home func(*T) uint64) []T {
	shift := max(bits.Len(uint(size))-1-10, 0)
	counts := make([]int, size>>shift+1)
	for i := range items {
		counts[home(&items[i])>>shift+1]++
	}
	for i := 1; i < len(counts); i++ {
		counts[i] += counts[i-1]
	}
	out := make([]T, len(items))
	for i := range items {
		b := home(&items[i]) >> shift
		out[counts[b]] = items[i]
		counts[b]++
	}
	return out
}
