package tokenizer

// Tokenizer is a loaded tokenizer.json. It is safe for concurrent use.
type Tokenizer struct {
	model bpe
	// tokens maps ids to token strings: byte-level strings ("Ġworld") for
	// the vocabulary, literal content for added tokens; "" marks unused ids.
	tokens     []string
	special    []bool           // by id: added token flagged "special"
	added      map[string]int32 // added token content → id
	nfc        bool             // normalizer is NFC
	split      pretokenizer     // Split pre-tokenizers
	raw        *matcher         // added tokens with normalized=false, or nil
	normalized *matcher         // added tokens with normalized=true, or nil
	vocabSize  int
	// chunked: encode each of kimiChunks' pieces on its own (Kimi-K2).
	chunked bool
}

// VocabSize returns one more than the largest token id, the number of rows
// an id-indexed table needs. For Qwen3 that is 151,669 (the model's
// embedding is padded beyond it).
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// TokenID returns the id of a token given as it appears in the vocabulary
// (byte-level form, e.g. "Ġworld") or as an added token's content
// (e.g. "<|im_end|>"). Added tokens take precedence, as in tokenizers.
func (t *Tokenizer) TokenID(s string) (int, bool) {
	if id, ok := t.added[s]; ok {
		return int(id), true
	}
	id, ok := t.model.vocab.get(s)
	return int(id), ok
}

// TokenString returns the token for an id in the form TokenID accepts, or
// "" for an unknown id.
func (t *Tokenizer) TokenString(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// IsSpecial reports whether id is an added token flagged special, such as
// <|im_end|> (but not <think>, which Qwen marks non-special).
func (t *Tokenizer) IsSpecial(id int) bool {
	return id >= 0 && id < len(t.special) && t.special[id]
}

// Encode returns the token ids of text, like tokenizers'
// encode(text, add_special_tokens=False).ids: added tokens written in the
// text, special or not, are recognised. Invalid UTF-8 bytes are encoded as
// the raw bytes they are. Truncation and padding settings are ignored.
func (t *Tokenizer) Encode(text string) []int {
	// Qwen averages over 3 bytes per token on mixed text; starting near that
	// avoids most regrowth of the output.
	e := encoder{t: t, ids: make([]int, 0, len(text)/3+8)}
	if t.chunked {
		kimiChunks(text, e.added)
		return e.ids
	}
	e.added(text)
	return e.ids
}

// added splits added tokens out of raw text and encodes the rest.
func (e *encoder) added(text string) {
	t := e.t
	if t.raw == nil {
		e.segment(text)
		return
	}
	for _, p := range t.raw.split(nil, text) {
		if p.tok != nil {
			e.ids = append(e.ids, int(p.tok.id))
		} else {
			e.segment(p.text)
		}
	}
}

// encoder holds the output and scratch space of one Encode call.
type encoder struct {
	t      *Tokenizer
	ids    []int
	pieces []piece
	words  [][2]int
	syms   []symbol
	word   []int32
}

// segment encodes text between added tokens of the raw text. tokenizers
// normalises each such segment on its own, so NFC never joins a character
// to an added token next to it.
func (e *encoder) segment(s string) {
	if s == "" {
		return
	}
	if e.t.nfc {
		s = nfc(s)
	}
	if e.t.normalized == nil {
		e.text(s)
		return
	}
	e.pieces = e.t.normalized.split(e.pieces[:0], s)
	for _, p := range e.pieces {
		if p.tok != nil {
			e.ids = append(e.ids, int(p.tok.id))
		} else {
			e.text(p.text)
		}
	}
}

// text pre-tokenizes normalised text and runs BPE on each word.
func (e *encoder) text(s string) {
	e.words = e.t.split.appendWords(e.words[:0], s)
	for _, w := range e.words {
		e.word = e.t.model.encodeWord(e.word[:0], s[w[0]:w[1]], &e.syms)
		for _, id := range e.word {
			e.ids = append(e.ids, int(id))
		}
	}
}
