package tokenizer

import (
	"container/heap"
	"hash/maphash"
	"strings"
	"sync/atomic"
)

// bpe holds the BPE model proper.
type bpe struct {
	merges *pairTable
	// byteToken is the id of each byte's one-character byte-level token, or -1
	// when the vocabulary lacks it.
	byteToken [256]int32
	// unk is the id emitted for bytes missing from the vocabulary, or -1 to
	// drop them, as tokenizers does when no unk_token is configured.
	unk     int32
	fuseUnk bool
	// byteFallback emits <0xXX> tokens for bytes missing from the vocabulary;
	// fallback lists them per byte (-1 padded), or starts with -1 when the
	// vocabulary lacks one of them.
	byteFallback bool
	fallback     [256][2]int32
	// ignoreMerges emits a word as one token when the vocabulary has it,
	// without running the merges (tokenizers' BPE.ignore_merges).
	ignoreMerges bool
	vocab        *vocabIndex

	cache wordCache
}

// wordCacheSize bounds the per-word cache. Words repeat heavily in natural
// text, but the cache must not grow with every distinct word of a long
// stream (random identifiers, base64), so it is direct-mapped: a word
// evicts whatever shared its slot. At most 64k words (a few MB) are kept.
const wordCacheSize = 1 << 16

// wordCache memoises the ids of multi-byte words. It is lock-free so that
// goroutines encoding with one Tokenizer do not contend: entries are
// immutable and slots are swapped atomically.
type wordCache struct {
	seed  maphash.Seed
	slots []atomic.Pointer[cachedWord]
}

type cachedWord struct {
	word string
	ids  []int32
}

func newWordCache() wordCache {
	return wordCache{seed: maphash.MakeSeed(), slots: make([]atomic.Pointer[cachedWord], wordCacheSize)}
}

func (c *wordCache) slot(word string) *atomic.Pointer[cachedWord] {
	return &c.slots[maphash.String(c.seed, word)&(wordCacheSize-1)]
}

func (c *wordCache) get(word string) ([]int32, bool) {
	if e := c.slot(word).Load(); e != nil && e.word == word {
		return e.ids, true
	}
	return nil, false
}

func (c *wordCache) put(word string, ids []int32) {
	// Clone: word points into the caller's text, which must not be retained.
	c.slot(word).Store(&cachedWord{word: strings.Clone(word), ids: ids})
}

func (c *wordCache) reset() {
	for i := range c.slots {
		c.slots[i].Store(nil)
	}
}

// symbol is one node of the doubly linked list of a word's current tokens.
type symbol struct {
	id         int32
	prev, next int32 // indices into the symbol slice, -1 at either end
	gone       bool  // merged into its left neighbour
}

// encodeWord appends the ids of one pre-tokenized word (raw bytes) to dst.
func (m *bpe) encodeWord(dst []int32, word string, scratch *[]symbol) []int32 {
	if len(word) == 1 {
		if id := m.byteToken[word[0]]; id >= 0 {
			return append(dst, id)
		}
	}
	if ids, ok := m.cache.get(word); ok {
		return append(dst, ids...)
	}
	start := len(dst)
	id, whole := int32(0), false
	if m.ignoreMerges {
		id, whole = m.vocab.get(byteLevelString(word))
	}
	if whole {
		dst = append(dst, id)
	} else {
		dst = m.mergeWord(dst, word, scratch)
	}
	m.cache.put(word, append([]int32(nil), dst[start:]...))
	return dst
}

// byteLevelString maps raw bytes to their byte-level form ("Ġworld").
func byteLevelString(word string) string {
	buf := make([]byte, 0, 2*len(word))
	for i := 0; i < len(word); i++ {
		buf = append(buf, byteToUTF8[word[i]]...)
	}
	return string(buf)
}

// mergeWord runs the merges over the word's bytes, lowest rank first and
// leftmost first among equal ranks, exactly like tokenizers' Word::merge_all.
func (m *bpe) mergeWord(dst []int32, word string, scratch *[]symbol) []int32 {
	syms := (*scratch)[:0]
	add := func(id int32) { syms = append(syms, symbol{id: id}) }
	// Unknown bytes follow merge_word: the unk token is held back until a
	// known byte (or the end) flushes it, so fuse_unk can extend it, and
	// byte-fallback tokens do not flush it.
	pendingUnk := false
	for i := 0; i < len(word); i++ {
		b := word[i]
		if id := m.byteToken[b]; id >= 0 {
			if pendingUnk {
				add(m.unk)
				pendingUnk = false
			}
			add(id)
			continue
		}
		if m.byteFallback && m.fallback[b][0] >= 0 {
			// tokenizers falls back on the bytes of the byte-level
			// character, not on the raw byte.
			for _, id := range m.fallback[b] {
				if id >= 0 {
					add(id)
				}
			}
			continue
		}
		if m.unk < 0 {
			continue
		}
		if pendingUnk && !m.fuseUnk {
			add(m.unk)
		}
		pendingUnk = true
	}
	if pendingUnk {
		add(m.unk)
	}
	*scratch = syms
	if len(syms) == 0 {
		return dst // every byte was unknown and dropped
	}
	for i := range syms {
		syms[i].prev = int32(i - 1)
		syms[i].next = int32(i + 1)
	}
	syms[len(syms)-1].next = -1

	if len(syms) <= quadraticLimit {
		m.mergeQuadratic(syms)
	} else {
		m.mergeHeap(syms)
	}
	for i := range syms {
		if !syms[i].gone {
			dst = append(dst, syms[i].id)
		}
	}
	return dst
}

// quadraticLimit is the word length (in bytes) up to which rescanning all
// pairs after each merge beats maintaining a priority queue.
const quadraticLimit = 24

// mergeQuadratic repeatedly merges the best pair by rescanning the list.
func (m *bpe) mergeQuadratic(syms []symbol) {
	for {
		best, bestRank, bestTok := int32(-1), int32(0), int32(0)
		for i := int32(0); i >= 0 && syms[i].next >= 0; i = syms[i].next {
			mg, ok := m.merges.get(pairKey(syms[i].id, syms[syms[i].next].id))
			if ok && (best < 0 || mg.rank < bestRank) {
				best, bestRank, bestTok = i, mg.rank, mg.token
			}
		}
		if best < 0 {
			return
		}
		mergeAt(syms, best, bestTok)
	}
}

// mergeAt merges syms[i] with its right neighbour into token tok.
func mergeAt(syms []symbol, i, tok int32) {
	r := syms[i].next
	syms[i].id = tok
	syms[r].gone = true
	syms[i].next = syms[r].next
	if n := syms[r].next; n >= 0 {
		syms[n].prev = i
	}
}

// candidate is a queued merge of the pair starting at symbol pos.
type candidate struct {
	pos, rank, token int32
}

type candidateHeap []candidate

func (h candidateHeap) Len() int { return len(h) }
func (h candidateHeap) Less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}
func (h candidateHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *candidateHeap) Push(x any)   { *h = append(*h, x.(candidate)) }
func (h *candidateHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// mergeHeap is mergeQuadratic in O(n log n) for long words (runs of CJK text
// or spaces can be thousands of bytes). Entries go stale when a neighbour
// merges; an entry is applied only if its pair still merges into the same
// token with the same rank, which makes it a current candidate.
func (m *bpe) mergeHeap(syms []symbol) {
	h := make(candidateHeap, 0, len(syms))
	push := func(i int32) {
		if j := syms[i].next; j >= 0 {
			if mg, ok := m.merges.get(pairKey(syms[i].id, syms[j].id)); ok {
				heap.Push(&h, candidate{pos: i, rank: mg.rank, token: mg.token})
			}
		}
	}
	for i := range syms {
		push(int32(i))
	}
	for h.Len() > 0 {
		c := heap.Pop(&h).(candidate)
		s := syms[c.pos]
		if s.gone || s.next < 0 {
			continue
		}
		mg, ok := m.merges.get(pairKey(s.id, syms[s.next].id))
		if !ok || mg.token != c.token || mg.rank != c.rank {
			continue
		}
		mergeAt(syms, c.pos, c.token)
		if p := syms[c.pos].prev; p >= 0 {
			push(p)
		}
		push(c.pos)
	}
}
