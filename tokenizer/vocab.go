package tokenizer

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
)

// vocabIndex maps token strings to ids. Resolving ~450k merge strings
// dominates Load, and each probe of a Go map[string]int32 misses the cache
// about three times (control word, slot, key bytes). This open-addressing
// table stores each key's first 8 bytes inline beside its id, so the 92% of
// merge halves that are that short cost one cache miss; longer keys are
// confirmed against the token list.
type vocabIndex struct {
	slots  []vocabSlot
	mask   uint64
	seed   maphash.Seed
	tokens []string // id → string; the index's own copy
	n      int
}

type vocabSlot struct {
	head uint64 // first 8 key bytes, little-endian, zero-padded
	// meta is hash<<32 (top 24 bits) | key length (8 bits, 255 = longer) |
	// id+1 (32 bits); 0 marks an empty slot.
	meta uint64
}

func newVocabIndex(tokens []string, n int) *vocabIndex {
	size := max(1<<bits.Len(uint(n+n/2)), 16) // load factor at most 2/3
	return &vocabIndex{slots: make([]vocabSlot, size), mask: uint64(size - 1), seed: maphash.MakeSeed(), tokens: tokens}
}

// keyHead packs up to 8 bytes of key; tag combines the hash and the length.
func keyHead[S string | []byte](key S) uint64 {
	var b [8]byte
	copy(b[:], key)
	return binary.LittleEndian.Uint64(b[:])
}

func keyTag(h uint64, n int) uint64 {
	return h>>40<<40 | uint64(min(n, 255))<<32
}

const tagMask = uint64(0xFFFFFFFF00000000)

// put maps key to id. An existing key is remapped and its old id returned,
// so the caller can forget the old id's string as tokenizers would.
func (v *vocabIndex) put(key string, id int32) (old int32, replaced bool) {
	h := maphash.String(v.seed, key)
	tag, head := keyTag(h, len(key)), keyHead(key)
	for i := h & v.mask; ; i = (i + 1) & v.mask {
		s := &v.slots[i]
		if s.meta == 0 {
			*s = vocabSlot{head: head, meta: tag | uint64(uint32(id+1))}
			v.n++
			return 0, false
		}
		if s.meta&tagMask == tag && s.head == head {
			if old := int32(uint32(s.meta)) - 1; len(key) <= 8 || v.tokens[old] == key {
				s.meta = tag | uint64(uint32(id+1))
				return old, true
			}
		}
	}
}

func (v *vocabIndex) get(key string) (int32, bool) {
	return v.find(maphash.String(v.seed, key), len(key), keyHead(key), func(id int32) bool { return v.tokens[id] == key })
}

// getBytes is get for a byte slice, without converting it to a string.
func (v *vocabIndex) getBytes(key []byte) (int32, bool) {
	h := maphash.Bytes(v.seed, key)
	tag, head := keyTag(h, len(key)), keyHead(key)
	for i := h & v.mask; ; i = (i + 1) & v.mask {
		s := &v.slots[i]
		if s.meta == 0 {
			return 0, false
		}
		if s.meta&tagMask == tag && s.head == head {
			if id := int32(uint32(s.meta)) - 1; len(key) <= 8 || v.tokens[id] == string(key) {
				return id, true
			}
		}
	}
}

func (v *vocabIndex) find(h uint64, n int, head uint64, long func(int32) bool) (int32, bool) {
	tag := keyTag(h, n)
	for i := h & v.mask; ; i = (i + 1) & v.mask {
		s := &v.slots[i]
		if s.meta == 0 {
			return 0, false
		}
		if s.meta&tagMask == tag && s.head == head {
			if id := int32(uint32(s.meta)) - 1; n <= 8 || long(id) {
				return id, true
			}
		}
	}
}

// len returns the number of distinct tokens.
func (v *vocabIndex) len() int { return v.n }
