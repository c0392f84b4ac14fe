package tokenizer

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
)

// vocabIndex maps token strings to ids. Load resolves ~450k merge strings,
// and its cost is mostly cache misses: a Go map[string]int32 misses about
// three times per probe (control word, slot, key bytes). This open-addressing
// table keeps each key's first 8 bytes inline beside its id, so a short key
// (92% of merge halves) costs one miss; longer keys are confirmed against the
// token list.
type vocabIndex struct {
	slots  []vocabSlot
	mask   uint64
	seed   maphash.Seed
	tokens []string // id → string; the index's own copy
	n      int
	filled chan struct{} // closed once fill is done
	sink   uint64        // keeps touch's loads alive
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

// headOf packs the first 8 bytes of a key, zero-padded.
func headOf(key string) uint64 {
	var b [8]byte
	copy(b[:], key)
	return binary.LittleEndian.Uint64(b[:])
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
	tokens := v.tokens
	hashes := make([]uint64, len(keys))
	for i, key := range keys {
		hashes[i] = maphash.String(v.seed, key)
	}
	for i, key := range keys {
		if i%prefetchBatch == 0 {
			v.touch(hashes[i:min(i+prefetchBatch, len(keys))])
		}
		k, id := keyInfo{hash: hashes[i], head: headOf(key), n: len(key)}, ids[i]
		for j := v.homeOf(k.hash); ; j = (j + 1) & v.mask {
			s := &v.slots[j]
			if s.meta == 0 {
				*s = vocabSlot{head: k.head, meta: k.tag() | uint64(uint32(id+1))}
				v.n++
				break
			}
			if s.meta&tagMask == k.tag() && s.head == k.head {
				if old := int32(uint32(s.meta)) - 1; k.n <= 8 || tokens[old] == key {
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

// prefetchBatch is how many table accesses Load starts together. The tables
// are far bigger than the caches, so nearly every access misses; Go has no
// prefetch instruction, but touching the home slots of a batch in a
// branch-free loop lets those misses overlap, and the probes that follow
// hit the cache. This more than halved the time Load spends probing.
const prefetchBatch = 16

// touch loads the home slots of a batch of hashes.
func (v *vocabIndex) touch(hashes []uint64) {
	var x uint64
	for _, h := range hashes {
		x += v.slots[v.homeOf(h)].meta
	}
	v.sink += x
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
