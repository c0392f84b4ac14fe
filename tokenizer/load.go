package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/text/unicode/norm"
)

// maxID bounds token ids so a corrupt file cannot make Parse allocate a
// huge id table (at most 64 MB); real vocabularies stay below 300k.
const maxID = 1 << 22

// Load reads a Hugging Face tokenizer.json file.
func Load(path string) (*Tokenizer, error) {
	data, release, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	defer release()
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

func (m *modelJSON) field(key string) any {
	switch key {
	case "type":
		return &m.Type
	case "dropout":
		return &m.Dropout
	case "unk_token":
		return &m.UnkToken
	case "continuing_subword_prefix":
		return &m.ContinuingSubwordPrefix
	case "end_of_word_suffix":
		return &m.EndOfWordSuffix
	case "fuse_unk":
		return &m.FuseUnk
	case "byte_fallback":
		return &m.ByteFallback
	case "ignore_merges":
		return &m.IgnoreMerges
	}
	return nil
}

// inField prefixes JSON syntax errors met inside a field with its name; the
// field's own errors already carry it.
func inField(field string, err error) error {
	var se *syntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%s: %w", field, err)
	}
	return err
}

// fieldError names the tokenizer.json field a problem was found in.
func fieldError(field string, format string, args ...any) error {
	return fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
}

func isNull(raw []byte) bool { return raw == nil || string(raw) == "null" }

func parse(data []byte) (*Tokenizer, error) {
	if len(data) > maxData {
		return nil, fmt.Errorf("%d bytes is too large for a tokenizer.json", len(data))
	}
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
			if s.peek() != '{' {
				return fieldError("model", "want an object")
			}
			return s.object(func(key string) error {
				var err error
				switch key {
				case "vocab":
					if vocab, err = parseVocab(s); err != nil {
						return fmt.Errorf("model.vocab: %w", err)
					}
					return nil
				case "merges":
					if vocab == nil {
						// Resolving merges needs the vocabulary; come back later.
						mergesRaw, err = s.skip()
						return err
					}
					merges, err = parseMerges(s, vocab)
					return inField("model.merges", err)
				}
				raw, err := s.skip()
				if err != nil {
					return err
				}
				if dst := mj.field(key); dst != nil {
					if err := json.Unmarshal(raw, dst); err != nil {
						return fieldError("model."+key, "%v", err)
					}
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
	vocab.wait()
	if merges == nil {
		if mergesRaw == nil {
			return nil, fieldError("model.merges", "missing")
		}
		if merges, err = parseMerges(&scanner{data: mergesRaw}, vocab); err != nil {
			return nil, inField("model.merges", err)
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

func (t *Tokenizer) setNormalizer(raw []byte) error {
	if isNull(raw) {
		return nil
	}
	var n struct {
		Type        string            `json:"type"`
		Normalizers []json.RawMessage `json:"normalizers"`
	}
	if err := json.Unmarshal(raw, &n); err != nil {
		return fieldError("normalizer", "%v", err)
	}
	if n.Type == "Sequence" && len(n.Normalizers) <= 1 {
		// DeepSeek-V3 ships an empty Sequence; one NFC inside is NFC.
		if len(n.Normalizers) == 0 {
			return nil
		}
		return t.setNormalizer(n.Normalizers[0])
	}
	if n.Type != "NFC" {
		return fieldError("normalizer", "unsupported type %q, want \"NFC\", an empty Sequence or null", n.Type)
	}
	t.nfc = true
	return nil
}

func (t *Tokenizer) setPreTokenizer(raw []byte) error {
	const want = `a Sequence of Split pre-tokenizers (Isolated, a Qwen or DeepSeek-V3 regex) ending with ByteLevel (add_prefix_space and use_regex false)`
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
	if seq.Type != "Sequence" || len(seq.PreTokenizers) < 2 {
		return fieldError("pre_tokenizer", "unsupported %s, want %s", describe(raw), want)
	}
	last := len(seq.PreTokenizers) - 1
	for i, rawSplit := range seq.PreTokenizers[:last] {
		pat, err := splitStage(rawSplit, fmt.Sprintf("pre_tokenizer.pretokenizers[%d]", i))
		if err != nil {
			return err
		}
		t.split.stages = append(t.split.stages, pat)
	}

	var kind typed
	var bl byteLevelJSON
	field := fmt.Sprintf("pre_tokenizer.pretokenizers[%d]", last)
	if err := json.Unmarshal(seq.PreTokenizers[last], &kind); err != nil || kind.Type != "ByteLevel" {
		return fieldError(field, "unsupported %s, want ByteLevel", describe(seq.PreTokenizers[last]))
	}
	if err := json.Unmarshal(seq.PreTokenizers[last], &bl); err != nil {
		return fieldError(field, "%v", err)
	}
	if bl.AddPrefixSpace || bl.UseRegex {
		return fieldError(field, "ByteLevel with add_prefix_space=%v use_regex=%v, want both false", bl.AddPrefixSpace, bl.UseRegex)
	}
	return nil
}

// splitStage reads one Split pre-tokenizer.
func splitStage(raw json.RawMessage, field string) (pattern, error) {
	var split splitJSON
	var kind typed
	if err := json.Unmarshal(raw, &kind); err != nil || kind.Type != "Split" {
		return nil, fieldError(field, "unsupported %s, want Split", describe(raw))
	}
	if err := json.Unmarshal(raw, &split); err != nil {
		return nil, fieldError(field, "%v", err)
	}
	if split.Pattern.Regex == nil {
		return nil, fieldError(field+".pattern", "want a Regex pattern")
	}
	pat, ok := newPattern(*split.Pattern.Regex)
	if !ok {
		return nil, fieldError(field+".pattern.Regex",
			"unsupported regex %q; only the Qwen3, Qwen3.5, GPT-4 (Llama 3, GLM-4.5) and DeepSeek-V3 patterns are implemented", *split.Pattern.Regex)
	}
	if split.Behavior != "Isolated" || split.Invert {
		return nil, fieldError(field, "behavior %q invert %v, want Isolated without invert", split.Behavior, split.Invert)
	}
	return pat, nil
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
	// The index keeps its own view of the vocabulary strings: ids past it
	// can share the backing array, but an added token that renames a
	// vocabulary id needs a copy.
	t.tokens = t.model.vocab.tokens
	for id, tok := range byID {
		if int(id) < len(t.tokens) && t.tokens[id] != tok.content {
			t.tokens = slices.Clone(t.tokens)
			break
		}
	}
	if n := int(maxAdded) + 1; n > len(t.tokens) {
		t.tokens = append(t.tokens, make([]string, n-len(t.tokens))...)
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
