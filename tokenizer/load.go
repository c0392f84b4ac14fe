package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/text/unicode/norm"
)

// maxID bounds token ids so a corrupt file cannot make Parse allocate
// gigabytes for the id table; real vocabularies stay below 300k.
const maxID = 1 << 24

// Load reads a Hugging Face tokenizer.json file.
func Load(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	return t, nil
}

// Parse reads the contents of a Hugging Face tokenizer.json file.
func Parse(data []byte) (*Tokenizer, error) {
	t, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: tokenizer.json: %w", err)
	}
	return t, nil
}

type addedTokenJSON struct {
	Content    *string `json:"content"`
	SingleWord bool    `json:"single_word"`
	LStrip     bool    `json:"lstrip"`
	RStrip     bool    `json:"rstrip"`
	Normalized *bool   `json:"normalized"`
	Special    bool    `json:"special"`
}

type typed struct {
	Type string `json:"type"`
}

type splitJSON struct {
	Pattern struct {
		Regex  *string `json:"Regex"`
		String *string `json:"String"`
	} `json:"pattern"`
	Behavior string `json:"behavior"`
	Invert   bool   `json:"invert"`
}

type byteLevelJSON struct {
	AddPrefixSpace bool `json:"add_prefix_space"`
	UseRegex       bool `json:"use_regex"`
}

// modelJSON holds the BPE settings other than vocab and merges.
type modelJSON struct {
	Type                    *string  `json:"type"`
	Dropout                 *float64 `json:"dropout"`
	UnkToken                *string  `json:"unk_token"`
	ContinuingSubwordPrefix *string  `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string  `json:"end_of_word_suffix"`
	FuseUnk                 bool     `json:"fuse_unk"`
	ByteFallback            bool     `json:"byte_fallback"`
	IgnoreMerges            bool     `json:"ignore_merges"`
}

// fieldError names the tokenizer.json field a problem was found in.
func fieldError(field string, format string, args ...any) error {
	return fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
}

func isNull(raw []byte) bool { return raw == nil || string(raw) == "null" }

func parse(data []byte) (*Tokenizer, error) {
	s := &scanner{data: data}
	var (
		addedRaw, normRaw, preRaw, decRaw []byte
		haveModel                         bool
		mj                                modelJSON
		vocab                             *vocabIndex
		mergesRaw                         []byte
		merges                            *pairTable
	)
	err := s.object(func(key string) error {
		var err error
		switch key {
		case "added_tokens":
			addedRaw, err = s.skip()
		case "normalizer":
			normRaw, err = s.skip()
		case "pre_tokenizer":
			preRaw, err = s.skip()
		case "decoder":
			decRaw, err = s.skip()
		case "model":
			haveModel = true
			return s.object(func(key string) error {
				switch key {
				case "vocab":
					vocab, err = parseVocab(s)
					return err
				case "merges":
					if vocab == nil {
						// Resolving merges needs the vocabulary; come back later.
						mergesRaw, err = s.skip()
						return err
					}
					merges, err = parseMerges(s, vocab)
					return err
				}
				raw, err := s.skip()
				if err != nil {
					return err
				}
				if err := json.Unmarshal(fmt.Appendf(nil, "{%q:%s}", key, raw), &mj); err != nil {
					return fieldError("model."+key, "%v", err)
				}
				return nil
			})
		default:
			_, err = s.skip()
		}
		return err
	})
	if err == nil && s.peek() != 0 {
		err = s.fail("trailing data after the top-level object")
	}
	if err != nil {
		return nil, err
	}
	if !haveModel {
		return nil, errors.New(`missing "model" section`)
	}
	if mj.Type != nil && *mj.Type != "BPE" {
		return nil, fieldError("model.type", "unsupported model type %q, want \"BPE\"", *mj.Type)
	}
	if vocab == nil {
		return nil, fieldError("model.vocab", "missing")
	}
	if merges == nil {
		if mergesRaw == nil {
			return nil, fieldError("model.merges", "missing")
		}
		if merges, err = parseMerges(&scanner{data: mergesRaw}, vocab); err != nil {
			return nil, err
		}
	}

	t := &Tokenizer{added: map[string]int32{}}
	if err := t.setModel(&mj, vocab, merges); err != nil {
		return nil, err
	}
	if err := t.setNormalizer(normRaw); err != nil {
		return nil, err
	}
	if err := t.setPreTokenizer(preRaw); err != nil {
		return nil, err
	}
	if err := t.setDecoder(decRaw); err != nil {
		return nil, err
	}
	// Added tokens come last: their patterns depend on the normalizer and
	// their ids on the vocabulary.
	if err := t.setAddedTokens(addedRaw, vocab.len()); err != nil {
		return nil, err
	}
	t.vocabSize = len(t.tokens)
	return t, nil
}

// parseVocab reads model.vocab, an object from token to id. Keys are
// recorded as offsets and turned into substrings of one copy of the section,
// which saves an allocation per token and keeps the keys together in memory,
// making the map lookups of parseMerges cheaper.
func parseVocab(s *scanner) (*vocabIndex, error) {
	type entry struct {
		off, end int32 // key bytes in s.data, or off < 0: escaped[end]
		id       int32
	}
	var (
		entries []entry
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
			if s.peek() != '"' {
				return nil, s.fail("want a token string in model.vocab")
			}
			e := entry{off: int32(s.pos + 1)}
			k, err := s.str()
			if err != nil {
				return nil, err
			}
			if e.end = e.off + int32(len(k)); int(e.end) != s.pos-1 {
				// The key had escapes, so k is the unescaped copy.
				e.off, e.end = -1, int32(len(escaped))
				escaped = append(escaped, string(k))
			}
			if err := s.expect(':'); err != nil {
				return nil, err
			}
			if e.id, err = s.int(); err != nil {
				return nil, fieldError("model.vocab", "token %q: %v", k, err)
			}
			if e.id < 0 || e.id >= maxID {
				return nil, fieldError("model.vocab", "token %q: id %d out of range [0, %d)", k, e.id, maxID)
			}
			maxSeen = max(maxSeen, e.id)
			entries = append(entries, e)
			if c := s.peek(); c == ',' {
				s.pos++
			} else if c == '}' {
				s.pos++
				break
			} else {
				return nil, s.fail("want ',' or '}' in model.vocab")
			}
		}
	}
	region := string(s.data[start:s.pos])
	tokens := make([]string, maxSeen+1)
	vocab := newVocabIndex(tokens, len(entries))
	for _, e := range entries {
		key := ""
		if e.off < 0 {
			key = escaped[e.end]
		} else {
			key = region[int(e.off)-start : int(e.end)-start]
		}
		tokens[e.id] = key
		// A repeated key keeps its last id, as in serde's map, and its
		// earlier id no longer decodes, as in tokenizers' reversed map.
		if old, replaced := vocab.put(key, e.id); replaced && old != e.id && tokens[old] == key {
			tokens[old] = ""
		}
	}
	return vocab, nil
}

// parseMerges reads model.merges, a list of "left right" strings (older
// files) or of [left, right] pairs (tokenizers >= 0.20), in rank order.
func parseMerges(s *scanner, vocab *vocabIndex) (*pairTable, error) {
	merges := newPairTable(vocab.len())
	lastMerged := int32(-2)
	var pair []byte // left + right, reused
	err := s.array(func(i int) error {
		field := mergeField(i)
		var left, right int32
		var ok bool
		lookup := vocab.getBytes
		switch s.peek() {
		case '"':
			b, err := s.str()
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
				return fieldError(field.String(), "%q is not a \"left right\" pair", b)
			}
			pair = append(pair[:0], b[:sp]...)
			pair = append(pair, b[sp+1:]...)
			if left, ok = lookup(b[:sp]); !ok {
				return fieldError(field.String(), "token %q not in model.vocab", b[:sp])
			}
			if right, ok = lookup(b[sp+1:]); !ok {
				return fieldError(field.String(), "token %q not in model.vocab", b[sp+1:])
			}
		case '[':
			n := 0
			pair = pair[:0]
			err := s.array(func(j int) error {
				b, err := s.str()
				if err != nil {
					return err
				}
				if j > 1 {
					return fieldError(field.String(), "want 2 tokens")
				}
				id, ok := lookup(b)
				if !ok {
					return fieldError(field.String(), "token %q not in model.vocab", b)
				}
				if j == 0 {
					left = id
				} else {
					right = id
				}
				pair = append(pair, b...)
				n++
				return nil
			})
			if err != nil {
				return err
			}
			if n != 2 {
				return fieldError(field.String(), "want 2 tokens, got %d", n)
			}
		default:
			return fieldError(field.String(), "want a string or a [left, right] list")
		}
		// Trained vocabularies number merged tokens in merge order, so the
		// next id is checked first, which saves a third of the lookups.
		merged, ok := lastMerged+1, true
		if merged < 0 || int(merged) >= len(vocab.tokens) || vocab.tokens[merged] != string(pair) {
			merged, ok = lookup(pair)
		}
		lastMerged = merged
		if !ok {
			return fieldError(field.String(), "merged token %q not in model.vocab", pair)
		}
		// A repeated pair keeps its last rank, like tokenizers' HashMap build.
		merges.put(pairKey(left, right), merge{rank: int32(i), token: merged})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return merges, nil
}

// mergeField names merge i lazily: formatting it for each of ~150k merges
// would dominate Load.
type mergeField int

func (f mergeField) String() string { return fmt.Sprintf("model.merges[%d]", int(f)) }

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

func (t *Tokenizer) setNormalizer(raw []byte) error {
	if isNull(raw) {
		return nil
	}
	var n typed
	if err := json.Unmarshal(raw, &n); err != nil {
		return fieldError("normalizer", "%v", err)
	}
	if n.Type != "NFC" {
		return fieldError("normalizer", "unsupported type %q, want \"NFC\" or null", n.Type)
	}
	t.nfc = true
	return nil
}

func (t *Tokenizer) setPreTokenizer(raw []byte) error {
	const want = `a Sequence of Split (Isolated, Qwen regex) and ByteLevel (add_prefix_space and use_regex false)`
	var seq struct {
		Type          string            `json:"type"`
		PreTokenizers []json.RawMessage `json:"pretokenizers"`
	}
	if isNull(raw) {
		return fieldError("pre_tokenizer", "missing, want %s", want)
	}
	if err := json.Unmarshal(raw, &seq); err != nil {
		return fieldError("pre_tokenizer", "%v", err)
	}
	if seq.Type != "Sequence" || len(seq.PreTokenizers) != 2 {
		return fieldError("pre_tokenizer", "unsupported %s, want %s", describe(raw), want)
	}
	var split splitJSON
	var kind typed
	if err := json.Unmarshal(seq.PreTokenizers[0], &kind); err != nil || kind.Type != "Split" {
		return fieldError("pre_tokenizer.pretokenizers[0]", "unsupported %s, want Split", describe(seq.PreTokenizers[0]))
	}
	if err := json.Unmarshal(seq.PreTokenizers[0], &split); err != nil {
		return fieldError("pre_tokenizer.pretokenizers[0]", "%v", err)
	}
	if split.Pattern.Regex == nil {
		return fieldError("pre_tokenizer.pretokenizers[0].pattern", "want a Regex pattern")
	}
	sp, ok := newSplitter(*split.Pattern.Regex)
	if !ok {
		return fieldError("pre_tokenizer.pretokenizers[0].pattern.Regex",
			"unsupported regex %q; only the Qwen3 and Qwen3.5 patterns are implemented", *split.Pattern.Regex)
	}
	if split.Behavior != "Isolated" || split.Invert {
		return fieldError("pre_tokenizer.pretokenizers[0]", "behavior %q invert %v, want Isolated without invert", split.Behavior, split.Invert)
	}
	t.split = sp

	var bl byteLevelJSON
	if err := json.Unmarshal(seq.PreTokenizers[1], &kind); err != nil || kind.Type != "ByteLevel" {
		return fieldError("pre_tokenizer.pretokenizers[1]", "unsupported %s, want ByteLevel", describe(seq.PreTokenizers[1]))
	}
	if err := json.Unmarshal(seq.PreTokenizers[1], &bl); err != nil {
		return fieldError("pre_tokenizer.pretokenizers[1]", "%v", err)
	}
	if bl.AddPrefixSpace || bl.UseRegex {
		return fieldError("pre_tokenizer.pretokenizers[1]", "ByteLevel with add_prefix_space=%v use_regex=%v, want both false", bl.AddPrefixSpace, bl.UseRegex)
	}
	return nil
}

func (t *Tokenizer) setDecoder(raw []byte) error {
	var d typed
	if isNull(raw) {
		return fieldError("decoder", "missing, want ByteLevel")
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return fieldError("decoder", "%v", err)
	}
	if d.Type != "ByteLevel" {
		return fieldError("decoder", "unsupported type %q, want \"ByteLevel\"", d.Type)
	}
	return nil
}

// describe names a component by its type for error messages.
func describe(raw []byte) string {
	var k typed
	if json.Unmarshal(raw, &k) != nil || k.Type == "" {
		return "value"
	}
	return fmt.Sprintf("type %q", k.Type)
}

// setAddedTokens registers added_tokens the way tokenizers' deserializer
// does: each is added in turn, taking the id of an existing token with the
// same content, else the next free id after the vocabulary. Files written by
// tokenizers list exactly those ids; tokenizers ignores the "id" field (it
// only logs a mismatch), and so does this package.
func (t *Tokenizer) setAddedTokens(raw []byte, modelSize int) error {
	var list []addedTokenJSON
	if !isNull(raw) {
		if err := json.Unmarshal(raw, &list); err != nil {
			return fieldError("added_tokens", "%v", err)
		}
	}
	byID := map[int32]*addedToken{}
	var specials, others []*addedToken
	isSpecial := map[string]bool{}
	maxAdded := int32(-1)
	for i, a := range list {
		field := fmt.Sprintf("added_tokens[%d]", i)
		if a.Content == nil {
			return fieldError(field, "missing content")
		}
		if *a.Content == "" {
			continue // tokenizers ignores empty added tokens
		}
		tok := &addedToken{
			content:    *a.Content,
			singleWord: a.SingleWord,
			lstrip:     a.LStrip,
			rstrip:     a.RStrip,
			normalized: !a.Special,
			special:    a.Special,
		}
		if a.Normalized != nil {
			tok.normalized = *a.Normalized
		}
		id, known := t.added[tok.content]
		if !known {
			id, known = t.model.vocab.get(tok.content)
		}
		if !known {
			switch {
			case maxAdded < 0:
				id = int32(modelSize)
			case maxAdded >= int32(modelSize) || modelSize == 0:
				id = maxAdded + 1
			default:
				id = int32(modelSize)
			}
		}
		if id >= maxID {
			return fieldError(field, "id %d out of range", id)
		}
		tok.id = id
		t.added[tok.content] = id
		maxAdded = max(maxAdded, id)
		byID[id] = tok
		if tok.special && !isSpecial[tok.content] {
			isSpecial[tok.content] = true
			specials = append(specials, tok)
		} else if !isSpecial[tok.content] {
			others = append(others, tok)
		}
	}

	// The vocabulary index keeps the original strings; added tokens may
	// override what an id decodes to.
	t.tokens = slices.Clone(t.model.vocab.tokens)
	for int(maxAdded) >= len(t.tokens) {
		t.tokens = append(t.tokens, "")
	}
	t.special = make([]bool, len(t.tokens))
	for id, tok := range byID {
		t.tokens[id] = tok.content
		t.special[id] = isSpecial[tok.content]
	}

	// Patterns point at the final settings of each id, as tokenizers looks
	// tokens up by id when it applies the flags.
	var raws, norms []*addedToken
	var rawPats, normPats []string
	for _, tok := range append(specials, others...) {
		final := byID[tok.id]
		if tok.normalized {
			p := tok.content
			if t.nfc {
				p = norm.NFC.String(p)
			}
			norms, normPats = append(norms, final), append(normPats, p)
		} else {
			raws, rawPats = append(raws, final), append(rawPats, tok.content)
		}
	}
	if len(raws) > 0 {
		t.raw = newMatcher(raws, rawPats)
	}
	if len(norms) > 0 {
		t.normalized = newMatcher(norms, normPats)
	}
	return nil
}
