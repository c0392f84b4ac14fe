package tokenizer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Kimi-K2 ships no tokenizer.json: its tokenization_kimi.py builds a tiktoken
// Encoding from tiktoken.model (one "base64-token rank" line per token), the
// pat_str above and special tokens numbered right after the ranks. This
// file loads that layout into the same BPE machinery as tokenizer.json.

// kimiReserved is how many ids tokenization_kimi.py gives special tokens
// after the ranks: num_reserved_special_tokens (256) + 2, named from
// added_tokens_decoder or "<|reserved_token_ID|>". Kimi-K2's config.json
// says 163,840 tokens, yet the last two of these ids lie beyond it; they are
// kept so that Encode matches tiktoken even for those literals.
const kimiReserved = 256 + 2

// Kimi's encode cuts text before tiktoken sees it (tiktoken issue 195):
// into 400,000-character chunks, then so that no run of whitespace or of
// non-whitespace exceeds 25,000 characters. Each cut ends a word.
const (
	kimiChunkChars = 400_000
	kimiMaxRun     = 25_000
)

// LoadDir loads the tokenizer of a checkpoint or packed model directory:
// its tokenizer.json, or, when there is none, a Kimi-K2 style tiktoken.model
// with its tokenizer_config.json.
func LoadDir(dir string) (*Tokenizer, error) {
	hf := filepath.Join(dir, "tokenizer.json")
	if _, err := os.Stat(hf); err == nil {
		return Load(hf)
	}
	tk := filepath.Join(dir, "tiktoken.model")
	if _, err := os.Stat(tk); err == nil {
		return LoadTiktoken(tk, filepath.Join(dir, "tokenizer_config.json"))
	}
	return nil, fmt.Errorf("tokenizer: %s has neither tokenizer.json nor tiktoken.model", dir)
}

// LoadTiktoken reads a Kimi-K2 tokenizer: the tiktoken rank file and the
// tokenizer_config.json beside it (tokenizer_class TikTokenTokenizer, whose
// added_tokens_decoder names the special tokens).
func LoadTiktoken(modelPath, configPath string) (*Tokenizer, error) {
	ranks, err := os.ReadFile(modelPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	config, err := os.ReadFile(configPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w (a tiktoken.model needs its tokenizer_config.json)", err)
	}
	t, err := ParseTiktoken(ranks, config)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", filepath.Dir(modelPath), err)
	}
	return t, nil
}

// ParseTiktoken is LoadTiktoken on the contents of the two files.
func ParseTiktoken(ranks, config []byte) (*Tokenizer, error) {
	tokens, byRaw, err := parseRanks(ranks)
	if err != nil {
		return nil, fmt.Errorf("tiktoken.model: %w", err)
	}
	specials, err := kimiSpecials(config, len(tokens))
	if err != nil {
		return nil, fmt.Errorf("tokenizer_config.json: %w", err)
	}
	t := &Tokenizer{added: map[string]int32{}, chunked: true}
	t.setTiktokenModel(tokens, byRaw)
	t.split.stages = []pattern{newKimiWord()}
	t.setSpecials(specials)
	return t, nil
}

// parseRanks reads tiktoken.model into raw token bytes by rank, and their
// ranks by bytes, as tiktoken's load_tiktoken_bpe does (blank lines
// skipped). Ranks must be 0..n-1 without gaps or repeats, and every single
// byte must be a token, which tiktoken's BPE assumes.
func parseRanks(data []byte) ([][]byte, map[string]int32, error) {
	var tokens [][]byte
	seen := make(map[string]int32, len(data)/16) // Kimi's lines average 17 bytes
	line := 0
	for len(data) > 0 {
		var l []byte
		if k := bytes.IndexByte(data, '\n'); k >= 0 {
			l, data = data[:k], data[k+1:]
		} else {
			l, data = data, nil
		}
		line++
		f := bytes.Fields(l)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, nil, fmt.Errorf("line %d: want \"<base64 token> <rank>\", got %d fields", line, len(f))
		}
		tok, err := base64.StdEncoding.DecodeString(string(f[0]))
		if err != nil || len(tok) == 0 {
			return nil, nil, fmt.Errorf("line %d: token %q is not non-empty base64", line, f[0])
		}
		rank, err := strconv.Atoi(string(f[1]))
		if err != nil || rank != len(tokens) {
			return nil, nil, fmt.Errorf("line %d: rank %q, want %d (ranks must count up from 0)", line, f[1], len(tokens))
		}
		if prev, dup := seen[string(tok)]; dup {
			return nil, nil, fmt.Errorf("line %d: token %q repeats rank %d", line, tok, prev)
		}
		if rank+kimiReserved >= maxID {
			return nil, nil, fmt.Errorf("line %d: more ranks than the %d ids this package allows", line, maxID)
		}
		seen[string(tok)] = int32(rank)
		tokens = append(tokens, tok)
	}
	for b := range 256 {
		if _, ok := seen[string([]byte{byte(b)})]; !ok {
			return nil, nil, fmt.Errorf("byte 0x%02x has no token (tiktoken needs all 256)", b)
		}
	}
	return tokens, seen, nil
}

// setTiktokenModel indexes the tokens under their byte-level strings (as
// Hugging Face's conversion of tiktoken files names them, so TokenString
// and Decode work unchanged) and turns the ranks into pair merges.
//
// tiktoken merges, at each step, the adjacent pair whose concatenation has
// the lowest rank, leftmost among equals, and starts from single bytes, so
// every part is a token. The pair table therefore gets every split of every
// token into two tokens, ranked by the whole token: the BPE loop then takes
// exactly tiktoken's steps. tiktoken also emits a word that is a token as
// that token without merging, which is ignore_merges.
func (t *Tokenizer) setTiktokenModel(tokens [][]byte, byRaw map[string]int32) {
	strs := make([]string, len(tokens), len(tokens)+kimiReserved)
	ids := make([]int32, len(tokens))
	for i, tok := range tokens {
		strs[i] = byteLevelString(string(tok))
		ids[i] = int32(i)
	}
	vocab := newVocabIndex(strs, len(strs))
	vocab.fill(slices2(strs), ids)

	merges := newPairTable(2 * len(tokens))
	for id, tok := range tokens {
		for k := 1; k < len(tok); k++ {
			a, ok := byRaw[string(tok[:k])]
			if !ok {
				continue
			}
			if b, ok := byRaw[string(tok[k:])]; ok {
				merges.put(pairKey(a, b), merge{rank: int32(id), token: int32(id)})
			}
		}
	}
	m := &t.model
	m.vocab, m.merges = vocab, merges
	m.ignoreMerges = true
	m.cache = newWordCache()
	m.unk = -1
	for b := range 256 {
		m.byteToken[b] = byRaw[string([]byte{byte(b)})]
		m.fallback[b] = [2]int32{-1, -1}
	}
}

// slices2 copies the key list: fill may blank entries of the token table it
// shares with the index, never of its keys.
func slices2(s []string) []string { return append([]string(nil), s...) }

type kimiConfig struct {
	TokenizerClass *string                    `json:"tokenizer_class"`
	AddedTokens    map[string]json.RawMessage `json:"added_tokens_decoder"`
}

// kimiSpecials returns the special tokens tokenization_kimi.py gives
// tiktoken, by id: ids n .. n+257, named by added_tokens_decoder or
// "<|reserved_token_ID|>", and whether each is flagged special.
func kimiSpecials(config []byte, n int) ([]*addedToken, error) {
	var c kimiConfig
	if err := json.Unmarshal(config, &c); err != nil {
		return nil, err
	}
	if c.TokenizerClass == nil || *c.TokenizerClass != "TikTokenTokenizer" {
		got := "missing"
		if c.TokenizerClass != nil {
			got = strconv.Quote(*c.TokenizerClass)
		}
		return nil, fmt.Errorf("tokenizer_class is %s, want \"TikTokenTokenizer\" (Kimi-K2's tiktoken tokenizer)", got)
	}
	out := make([]*addedToken, kimiReserved)
	for i := range out {
		id := n + i
		out[i] = &addedToken{id: int32(id), content: fmt.Sprintf("<|reserved_token_%d|>", id), special: true}
	}
	for key, raw := range c.AddedTokens {
		field := "added_tokens_decoder." + key
		id, err := strconv.Atoi(key)
		if err != nil {
			return nil, fmt.Errorf("%s: the key is not a token id", field)
		}
		if id < n || id >= n+kimiReserved {
			return nil, fmt.Errorf("%s: id outside the special ids [%d, %d) that follow tiktoken.model's ranks", field, n, n+kimiReserved)
		}
		var a addedTokenJSON
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, fmt.Errorf("%s: %v", field, err)
		}
		if a.Content == nil || *a.Content == "" {
			return nil, fmt.Errorf("%s: missing content", field)
		}
		out[id-n].content, out[id-n].special = *a.Content, a.Special
	}
	seen := map[string]int32{}
	for _, tok := range out {
		if prev, dup := seen[tok.content]; dup {
			return nil, fmt.Errorf("added_tokens_decoder: %q names both %d and %d", tok.content, prev, tok.id)
		}
		seen[tok.content] = tok.id
	}
	return out, nil
}

// ExtraReserved reports whether id is one of the two special ids a Kimi-K2
// tokenizer numbers after its 256 reserved ones (tokenization_kimi.py's
// "num_reserved_special_tokens + 2"). Kimi-K2's embedding stops before
// them; only their literal text, such as "<|reserved_token_163840|>",
// encodes to them.
func (t *Tokenizer) ExtraReserved(id int) bool {
	return t.chunked && id >= len(t.tokens)-2 && id < len(t.tokens)
}

// setSpecials makes the special tokens matchable anywhere in the text, as
// tiktoken's encode(allowed_special="all") does (none of Kimi's is a prefix
// of another, so leftmost-longest matching finds tiktoken's matches).
func (t *Tokenizer) setSpecials(specials []*addedToken) {
	n := len(t.model.vocab.tokens)
	t.tokens = append(t.model.vocab.tokens, make([]string, len(specials))...)
	t.special = make([]bool, len(t.tokens))
	pats := make([]string, len(specials))
	for i, tok := range specials {
		t.tokens[n+i] = tok.content
		t.special[n+i] = tok.special
		t.added[tok.content] = tok.id
		pats[i] = tok.content
	}
	t.raw = newMatcher(specials, pats)
	t.vocabSize = len(t.tokens)
}

// kimiChunks calls f on the pieces Kimi's encode cuts text into before
// tiktoken: 400,000-character chunks, each cut further so that no run of
// whitespace or non-whitespace (Python's str.isspace) passes 25,000
// characters.
func kimiChunks(text string, f func(string)) {
	start, chars := 0, 0
	for i := range text {
		if chars == kimiChunkChars {
			splitRuns(text[start:i], f)
			start, chars = i, 0
		}
		chars++
	}
	if start < len(text) {
		splitRuns(text[start:], f)
	}
}

// splitRuns is tokenization_kimi.py's _split_whitespaces_or_nonwhitespaces.
func splitRuns(s string, f func(string)) {
	from, run, space := 0, 0, false
	for i, r := range s {
		sp := pyIsSpace(r)
		if i == 0 {
			space = sp
		}
		if sp != space {
			space, run = sp, 1
			continue
		}
		if run++; run > kimiMaxRun {
			f(s[from:i])
			from, run = i, 1
		}
	}
	f(s[from:])
}

// pyIsSpace is Python's str.isspace for one character: general category Zs
// or bidirectional class WS, B or S.
func pyIsSpace(r rune) bool {
	switch {
	case r >= 0x09 && r <= 0x0D, r >= 0x1C && r <= 0x20, r == 0x85, r == 0xA0, r == 0x1680,
		r >= 0x2000 && r <= 0x200A, r == 0x2028, r == 0x2029, r == 0x202F, r == 0x205F, r == 0x3000:
		return true
	}
	return false
}
