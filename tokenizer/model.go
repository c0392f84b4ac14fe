package tokenizer

import (
	"fmt"
	"math"
)

// parseVocab reads model.vocab, an object from token to id. Keys become
// substrings of one copy of the section: one allocation instead of one per
// token, and neighbouring ids stay neighbours in memory.
func parseVocab(s *scanner) (*vocabIndex, error) {
	type entry struct {
		off, end int32 // key bytes in s.data, or off < 0: escaped[end]
		id       int32
	}
	var (
		entries = make([]entry, 0, len(s.data)/64)
		escaped []string
		maxSeen = int32(-1)
	)
	if err := s.expect('{'); err != nil {
		return nil, err
	}
	start := s.pos
	if s.peek() == '}' {
		s.pos++
	} else {
		for {
			k, off, err := s.strAt()
			if err != nil {
				return nil, err
			}
			e := entry{off: int32(off), end: int32(off + len(k))}
			if off < 0 {
				e.end = int32(len(escaped))
				escaped = append(escaped, string(k))
			}
			if err := s.expect(':'); err != nil {
				return nil, err
			}
			if e.id, err = s.int(); err != nil {
				return nil, fmt.Errorf("token %q: %w", k, err)
			}
			if e.id < 0 || e.id >= maxID {
				return nil, fmt.Errorf("token %q: id %d out of range [0, %d)", k, e.id, maxID)
			}
			maxSeen = max(maxSeen, e.id)
			entries = append(entries, e)
			if c := s.peek(); c == ',' {
				s.pos++
			} else if c == '}' {
				s.pos++
				break
			} else {
				return nil, s.fail("want ',' or '}' after a token id")
			}
		}
	}
	region := string(s.data[start:s.pos])
	// Room for the added tokens that usually follow the vocabulary, so
	// that the Tokenizer's id table can extend this one without a copy.
	tokens := make([]string, maxSeen+1, maxSeen+1+1024)
	keys := make([]string, len(entries))
	ids := make([]int32, len(entries))
	for i, e := range entries {
		if e.off < 0 {
			keys[i] = escaped[e.end]
		} else {
			keys[i] = region[int(e.off)-start : int(e.end)-start]
		}
		ids[i] = e.id
		tokens[e.id] = keys[i]
	}
	v := newVocabIndex(tokens, len(keys))
	// Indexing overlaps with scanning the merges, which needs only the
	// hash seed until it resolves them.
	go v.fill(keys, ids)
	return v, nil
}

// span locates a merge half: s.data[off:off+n], or esc[-off-1:][:n] when the
// JSON string had escapes.
type span struct{ off, n int32 }

// parseMerges reads model.merges, a list of "left right" strings (older
// files) or of [left, right] pairs (tokenizers >= 0.20), in rank order. It
// records where every half is while the vocabulary index is still being
// filled, then resolves them.
func parseMerges(s *scanner, vocab *vocabIndex) (*pairTable, error) {
	var (
		halves = make([]span, 0, len(s.data)/32) // left, right, left, right, ...
		esc    []byte
	)
	add := func(b []byte, off int) {
		if off < 0 {
			off = -len(esc) - 1
			esc = append(esc, b...)
		}
		halves = append(halves, span{int32(off), int32(len(b))})
	}
	err := s.array(func(i int) error {
		switch s.peek() {
		case '"':
			b, off, err := s.strAt()
			if err != nil {
				return err
			}
			sp := -1
			for j, c := range b {
				if c == ' ' {
					sp = j
					break
				}
			}
			if sp < 0 {
				return fieldError(mergeField(i).String(), "%q is not a \"left right\" pair", b)
			}
			if off < 0 {
				add(b[:sp], -1)
				add(b[sp+1:], -1)
			} else {
				add(b[:sp], off)
				add(b[sp+1:], off+sp+1)
			}
		case '[':
			n := 0
			err := s.array(func(j int) error {
				b, off, err := s.strAt()
				if err != nil {
					return err
				}
				if n++; n <= 2 {
					add(b, off)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if n != 2 {
				return fieldError(mergeField(i).String(), "want 2 tokens, got %d", n)
			}
		default:
			return fieldError(mergeField(i).String(), "want a string or a [left, right] list")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	bytesOf := func(h span) []byte {
		if h.off < 0 {
			return esc[-h.off-1:][:h.n]
		}
		return s.data[h.off:][:h.n]
	}

	vocab.wait()
	ids := make([]int32, len(halves))
	var infos [prefetchBatch]keyInfo
	var hashes [prefetchBatch]uint64
	for start := 0; start < len(halves); start += prefetchBatch {
		batch := halves[start:min(start+prefetchBatch, len(halves))]
		for j, h := range batch {
			infos[j] = vocab.info(bytesOf(h))
			hashes[j] = infos[j].hash
		}
		vocab.touch(hashes[:len(batch)])
		for j, h := range batch {
			id, ok := vocab.probe(infos[j], bytesOf(h))
			if !ok {
				id = -1
			}
			ids[start+j] = id
		}
	}

	n := len(halves) / 2
	keys := make([]uint64, n)
	vals := make([]merge, n)
	last := int32(-2)
	var pair []byte
	for i := range n {
		left, right := bytesOf(halves[2*i]), bytesOf(halves[2*i+1])
		for j, b := range [][]byte{left, right} {
			if ids[2*i+j] < 0 {
				return nil, fieldError(mergeField(i).String(), "token %q not in model.vocab", b)
			}
		}
		// Trained vocabularies number merged tokens in merge order, so the
		// next id is checked first; it saves a third of the lookups.
		merged, ok := last+1, true
		if t := vocab.token(merged); len(t) != len(left)+len(right) || t[:len(left)] != string(left) || t[len(left):] != string(right) {
			pair = append(append(pair[:0], left...), right...)
			if merged, ok = vocab.getBytes(pair); !ok {
				return nil, fieldError(mergeField(i).String(), "merged token %q not in model.vocab", pair)
			}
		}
		last = merged
		keys[i] = pairKey(ids[2*i], ids[2*i+1])
		vals[i] = merge{rank: int32(i), token: merged}
	}
	merges := newPairTable(n)
	for i, k := range keys {
		if i%prefetchBatch == 0 {
			merges.touch(keys[i:min(i+prefetchBatch, len(keys))])
		}
		merges.put(k, vals[i])
	}
	return merges, nil
}

// mergeField names merge i lazily: formatting it for each of ~150k merges
// would dominate Load.
type mergeField int

func (f mergeField) String() string { return fmt.Sprintf("model.merges[%d]", int(f)) }

// maxData keeps offsets within int32.
const maxData = math.MaxInt32

func (t *Tokenizer) setModel(mj *modelJSON, vocab *vocabIndex, merges *pairTable) error {
	if mj.Dropout != nil && *mj.Dropout != 0 {
		return fieldError("model.dropout", "BPE dropout %v is not supported (it makes encoding random), want null", *mj.Dropout)
	}
	if p := mj.ContinuingSubwordPrefix; p != nil && *p != "" {
		return fieldError("model.continuing_subword_prefix", "%q is not supported, want null or \"\"", *p)
	}
	if p := mj.EndOfWordSuffix; p != nil && *p != "" {
		return fieldError("model.end_of_word_suffix", "%q is not supported, want null or \"\"", *p)
	}
	m := &t.model
	m.vocab = vocab
	m.merges = merges
	m.fuseUnk = mj.FuseUnk
	m.byteFallback = mj.ByteFallback
	m.ignoreMerges = mj.IgnoreMerges
	m.cache = newWordCache()
	m.unk = -1
	if mj.UnkToken != nil {
		// tokenizers only fails when an unknown byte actually needs an unk
		// token it lacks; Encode cannot fail, so such bytes are dropped.
		if id, ok := vocab.get(*mj.UnkToken); ok {
			m.unk = id
		}
	}
	for b := range 256 {
		m.byteToken[b] = -1
		if id, ok := vocab.get(byteToUTF8[b]); ok {
			m.byteToken[b] = id
		}
		m.fallback[b] = [2]int32{-1, -1}
		var ids [2]int32
		ok := true
		for j, c := range []byte(byteToUTF8[b]) {
			id, found := vocab.get(fmt.Sprintf("<0x%02X>", c))
			ok = ok && found
			ids[j] = id
		}
		if ok {
			m.fallback[b] = ids
			if len(byteToUTF8[b]) == 1 {
				m.fallback[b][1] = -1
			}
		}
	}
	return nil
}
