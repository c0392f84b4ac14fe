package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
)

func TestAccessors(t *testing.T) {
	tok := loadQwen3(t)
	if got := tok.VocabSize(); got != 151669 {
		t.Errorf("VocabSize = %d, want 151669", got)
	}
	for _, c := range []struct {
		s       string
		id      int
		special bool
	}{
		{"!", 0, false},
		{"Ġworld", 1879, false},
		{"<|endoftext|>", 151643, true},
		{"<|im_end|>", 151645, true},
		{"<think>", 151667, false},
	} {
		id, ok := tok.TokenID(c.s)
		if !ok || id != c.id {
			t.Errorf("TokenID(%q) = %d, %v; want %d", c.s, id, ok, c.id)
		}
		if got := tok.TokenString(c.id); got != c.s {
			t.Errorf("TokenString(%d) = %q, want %q", c.id, got, c.s)
		}
		if got := tok.IsSpecial(c.id); got != c.special {
			t.Errorf("IsSpecial(%d) = %v, want %v", c.id, got, c.special)
		}
	}
	if _, ok := tok.TokenID("no such token"); ok {
		t.Error("TokenID found a missing token")
	}
	if tok.IsSpecial(-1) || tok.IsSpecial(1<<30) {
		t.Error("IsSpecial true for an invalid id")
	}
}

// TestNormalizationPerSegment checks that NFC runs on the text between
// non-normalized added tokens separately: U+0338 after '>' would otherwise
// compose into U+226F and swallow the token's last character.
func TestNormalizationPerSegment(t *testing.T) {
	tok := loadQwen3(t)
	end, _ := tok.TokenID("<|im_end|>")
	got := tok.Encode("<|im_end|>\u0338")
	want := append([]int{end}, tok.Encode("\u0338")...)
	if !slices.Equal(got, want) {
		t.Errorf("Encode = %v, want %v", got, want)
	}
	if dec := tok.Decode(got); dec != "<|im_end|>\u0338" {
		t.Errorf("Decode = %q", dec)
	}
}

// editedTiny returns the tiny tokenizer.json after edit changes its decoded
// form.
func editedTiny(t *testing.T, edit func(m map[string]any)) []byte {
	t.Helper()
	data, err := os.ReadFile(tinyPath)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// setAdded changes the flags of the added token with the given content.
func setAdded(m map[string]any, content string, flags map[string]any) {
	for _, a := range m["added_tokens"].([]any) {
		if tok := a.(map[string]any); tok["content"] == content {
			for k, v := range flags {
				tok[k] = v
			}
		}
	}
}

// concat joins id lists.
func concat(parts ...[]int) []int {
	var out []int
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestAddedTokenFlags(t *testing.T) {
	plain := loadTiny(t)
	enc := plain.Encode
	tok, err := Parse(editedTiny(t, func(m map[string]any) {
		setAdded(m, "<|im_end|>", map[string]any{"lstrip": true})
		setAdded(m, "<|im_start|>", map[string]any{"rstrip": true})
		setAdded(m, "<|endoftext|>", map[string]any{"single_word": true})
		added := m["added_tokens"].([]any)
		added = append(added,
			map[string]any{"id": 2048, "content": "caf\u00e9", "normalized": true, "special": false},
			map[string]any{"id": 2049, "content": "na\u00efve", "normalized": false, "special": false},
		)
		m["added_tokens"] = added
	}))
	if err != nil {
		t.Fatal(err)
	}
	id := func(s string) []int {
		i, ok := tok.TokenID(s)
		if !ok {
			t.Fatalf("no id for %q", s)
		}
		return []int{i}
	}
	cases := []struct {
		name, text string
		want       []int
	}{
		{"lstrip takes the spaces before", "hi  \t<|im_end|> x", concat(enc("hi"), id("<|im_end|>"), enc(" x"))},
		{"rstrip takes the spaces after", "<|im_start|> \n user", concat(id("<|im_start|>"), enc("user"))},
		{"single_word at word boundaries", "a <|endoftext|> b", concat(enc("a "), id("<|endoftext|>"), enc(" b"))},
		{"single_word inside a word is text", "a<|endoftext|>", concat(enc("a"), enc("<|"), enc("endoftext"), enc("|>"))},
		{"normalized token matches after NFC", "cafe\u0301!", concat(id("caf\u00e9"), enc("!"))},
		{"non-normalized token matches raw text only", "nai\u0308ve na\u00efve", concat(enc("na\u00efve "), id("na\u00efve"))},
	}
	for _, c := range cases {
		if got := tok.Encode(c.text); !slices.Equal(got, c.want) {
			t.Errorf("%s: Encode(%q) = %v, want %v", c.name, c.text, got, c.want)
		}
	}
	if got, want := id("caf\u00e9")[0], 2048; got != want {
		t.Errorf("new added token id %d, want %d", got, want)
	}
	if tok.VocabSize() != 2050 {
		t.Errorf("VocabSize = %d, want 2050", tok.VocabSize())
	}
}

func TestParseErrors(t *testing.T) {
	valid, err := os.ReadFile(tinyPath)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		data []byte
		want string // substring of the error
	}{
		{"not JSON", []byte("not json"), "invalid JSON"},
		{"truncated", valid[:len(valid)/2], "invalid JSON"},
		{"trailing data", append(slices.Clone(valid), "{}"...), "trailing data"},
		{"empty object", []byte("{}"), `missing "model"`},
		{"missing model", editedTiny(t, func(m map[string]any) { delete(m, "model") }), `missing "model"`},
		{"model type", editedTiny(t, func(m map[string]any) { m["model"].(map[string]any)["type"] = "WordPiece" }), `model.type: unsupported model type "WordPiece"`},
		{"missing vocab", editedTiny(t, func(m map[string]any) { delete(m["model"].(map[string]any), "vocab") }), "model.vocab: missing"},
		{"missing merges", editedTiny(t, func(m map[string]any) { delete(m["model"].(map[string]any), "merges") }), "model.merges: missing"},
		{"bad vocab id", editedTiny(t, func(m map[string]any) { m["model"].(map[string]any)["vocab"].(map[string]any)["a"] = "x" }), `model.vocab`},
		{"merge of unknown token", editedTiny(t, func(m map[string]any) {
			m["model"].(map[string]any)["merges"] = []any{[]any{"Ġ", "nosuch"}}
		}), `model.merges[0]: token "nosuch" not in model.vocab`},
		{"malformed merge", editedTiny(t, func(m map[string]any) { m["model"].(map[string]any)["merges"] = []any{"nospace"} }), `model.merges[0]`},
		{"dropout", editedTiny(t, func(m map[string]any) { m["model"].(map[string]any)["dropout"] = 0.1 }), "model.dropout"},
		{"pre-tokenizer type", editedTiny(t, func(m map[string]any) { m["pre_tokenizer"] = map[string]any{"type": "Whitespace"} }), `pre_tokenizer: unsupported type "Whitespace"`},
		{"no pre-tokenizer", editedTiny(t, func(m map[string]any) { m["pre_tokenizer"] = nil }), "pre_tokenizer: missing"},
		{"regex", editedTiny(t, func(m map[string]any) {
			split := m["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[0].(map[string]any)
			split["pattern"] = map[string]any{"Regex": `\w+|\s+`}
		}), "pre_tokenizer.pretokenizers[0].pattern.Regex: unsupported regex"},
		{"normalizer", editedTiny(t, func(m map[string]any) { m["normalizer"] = map[string]any{"type": "Lowercase"} }), `normalizer: unsupported type "Lowercase"`},
		{"decoder", editedTiny(t, func(m map[string]any) { m["decoder"] = map[string]any{"type": "WordPiece"} }), `decoder: unsupported type "WordPiece"`},
		{"added token without content", editedTiny(t, func(m map[string]any) {
			m["added_tokens"] = []any{map[string]any{"id": 1}}
		}), "added_tokens[0]: missing content"},
		{"deep nesting", []byte(`{"x":` + strings.Repeat("[", 1000)), "nested too deeply"},
	}
	for _, c := range cases {
		_, err := Parse(c.data)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// TestParseTruncations feeds every prefix of a valid file (at a stride) to
// Parse: each must fail cleanly, never panic.
func TestParseTruncations(t *testing.T) {
	valid, err := os.ReadFile(tinyPath)
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(valid); n += 1 + n/50 {
		if _, err := Parse(valid[:n]); err == nil {
			t.Fatalf("Parse of the first %d bytes succeeded", n)
		}
	}
}

func TestLoadErrorNamesFile(t *testing.T) {
	_, err := Load("/nonexistent/tokenizer.json")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/tokenizer.json") {
		t.Errorf("err = %v", err)
	}
	path := t.TempDir() + "/tokenizer.json"
	if err := os.WriteFile(path, []byte(`{"model": 3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want it to name %s", err, path)
	}
}

// TestMergeStrategiesAgree runs the quadratic and heap merge loops over the
// same words; they must agree since Encode picks one by word length.
func TestMergeStrategiesAgree(t *testing.T) {
	tok := loadQwen3(t)
	g := readGolden(t, qwen3GoldenPath)
	var words []string
	for _, c := range g.Cases {
		for _, w := range tok.split.appendWords(nil, c.Text) {
			words = append(words, c.Text[w[0]:w[1]])
		}
	}
	words = append(words, strings.Repeat("ab", 40), strings.Repeat(" ", 100), strings.Repeat("日本語", 30),
		"supercalifragilisticexpialidociousantidisestablishmentarianism")
	m := &tok.model
	for _, w := range words {
		var quad, hp []int32
		for _, useHeap := range []bool{false, true} {
			var syms []symbol
			for i := 0; i < len(w); i++ {
				syms = append(syms, symbol{id: m.byteToken[w[i]], prev: int32(i - 1), next: int32(i + 1)})
			}
			syms[len(syms)-1].next = -1
			if useHeap {
				m.mergeHeap(syms)
			} else {
				m.mergeQuadratic(syms)
			}
			var out []int32
			for _, s := range syms {
				if !s.gone {
					out = append(out, s.id)
				}
			}
			if useHeap {
				hp = out
			} else {
				quad = out
			}
		}
		if !slices.Equal(quad, hp) {
			t.Errorf("word %q: quadratic %v, heap %v", w, quad, hp)
		}
	}
}

// asciiJSON escapes every non-ASCII character of a JSON document as \uXXXX
// (surrogate pairs above the BMP), as Python's json.dumps does by default.
func asciiJSON(data []byte) []byte {
	var b strings.Builder
	for _, r := range string(data) {
		switch {
		case r < 0x80:
			b.WriteRune(r)
		case r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			hi, lo := utf16.EncodeRune(r)
			fmt.Fprintf(&b, `\u%04x\u%04x`, hi, lo)
		}
	}
	return []byte(b.String())
}

// TestFileVariants re-encodes the tiny tokenizer the ways other writers do:
// merges as "left right" strings, every non-ASCII character escaped, and
// merges before vocab (json.Marshal sorts keys). All golden cases must
// still pass.
func TestFileVariants(t *testing.T) {
	data := editedTiny(t, func(m map[string]any) {
		model := m["model"].(map[string]any)
		var legacy []any
		for _, p := range model["merges"].([]any) {
			pair := p.([]any)
			legacy = append(legacy, pair[0].(string)+" "+pair[1].(string))
		}
		model["merges"] = legacy
	})
	if !strings.Contains(string(data), `"merges":["Ġ Ġ"`) || strings.Index(string(data), `"merges"`) > strings.Index(string(data), `"vocab"`) {
		t.Fatalf("variant not built as intended: %.200s", data)
	}
	g := readGolden(t, tinyGoldenPath)
	for _, variant := range []struct {
		name string
		data []byte
	}{{"string merges", data}, {"escaped", asciiJSON(data)}} {
		tok, err := Parse(variant.data)
		if err != nil {
			t.Fatalf("%s: %v", variant.name, err)
		}
		for _, c := range g.Cases {
			if got := tok.Encode(c.Text); !slices.Equal(got, c.IDs) {
				t.Errorf("%s: Encode(%q) = %v, want %v", variant.name, c.Text, got, c.IDs)
			}
			if got := tok.Decode(c.IDs); got != c.Decoded {
				t.Errorf("%s: Decode = %q, want %q", variant.name, got, c.Decoded)
			}
		}
	}
}

func TestDuplicateVocabKey(t *testing.T) {
	// "Ġa" appears twice; like serde's map, the later id wins for lookups
	// and the earlier id no longer decodes.
	data := []byte(`{"model": {"type": "BPE", "vocab": {"a": 0, "\u0120": 1, "\u0120a": 2, "b": 3, "\u0120a": 4},
		"merges": [["\u0120", "a"]]},
		"pre_tokenizer": ` + qwenPreTokenizer + `, "decoder": {"type": "ByteLevel"}}`)
	tok, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := tok.TokenID("Ġa"); !ok || id != 4 {
		t.Errorf("TokenID(Ġa) = %d, %v; want 4", id, ok)
	}
	if s := tok.TokenString(2); s != "" {
		t.Errorf("TokenString(2) = %q, want empty", s)
	}
	if got := tok.Encode(" a"); !slices.Equal(got, []int{4}) {
		t.Errorf("Encode(\" a\") = %v, want [4]", got)
	}
}

const qwenPreTokenizer = `{"type": "Sequence", "pretokenizers": [
	{"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
	{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]}`

func TestFieldErrorsNameTheField(t *testing.T) {
	cases := []struct{ json, want string }{
		{`{"model": 3}`, "model: want an object"},
		{`{"model": {"vocab": []}}`, "model.vocab: invalid JSON"},
		{`{"model": {"vocab": {"a": -1}}}`, `model.vocab: token "a": id -1 out of range`},
		{`{"model": {"vocab": {"a": 1.5}}}`, `model.vocab: token "a": invalid JSON`},
		{`{"model": {"vocab": {"a": 0}, "merges": {}}}`, "model.merges: invalid JSON"},
		{`{"model": {"vocab": {"a": 0}, "merges": [["a"]]}}`, "model.merges[0]: want 2 tokens, got 1"},
		{`{"model": {"type": 7}}`, "model.type: json: cannot unmarshal number"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%s): err = %v, want one containing %q", c.json, err, c.want)
		}
	}
}

func TestIgnoreMerges(t *testing.T) {
	// The merges alone stop at "ab" + "c"; ignore_merges takes the whole
	// word from the vocabulary instead.
	build := func(ignore bool) *Tokenizer {
		data := fmt.Sprintf(`{"model": {"type": "BPE", "ignore_merges": %v,
			"vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4}, "merges": ["a b"]},
			"pre_tokenizer": %s, "decoder": {"type": "ByteLevel"}}`, ignore, qwenPreTokenizer)
		tok, err := Parse([]byte(data))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, c := range []struct {
		ignore bool
		text   string
		want   []int
	}{
		{false, "abc", []int{3, 2}},
		{true, "abc", []int{4}},
		{true, "abcab", []int{3, 2, 3}}, // not in the vocabulary: merges as usual
	} {
		tok := build(c.ignore)
		for range 2 { // the second time comes from the word cache
			if got := tok.Encode(c.text); !slices.Equal(got, c.want) {
				t.Errorf("ignore_merges=%v: Encode(%q) = %v, want %v", c.ignore, c.text, got, c.want)
			}
		}
	}
}

func TestUnknownBytes(t *testing.T) {
	// Only "a" is in the vocabulary: 'x' and ' ' are unknown bytes.
	for _, c := range []struct {
		model      string
		want, only []int // Encode("axxa"), Encode("x x")
	}{
		{`"unk_token": null`, []int{0, 0}, nil}, // dropped, as tokenizers does without unk
		{`"unk_token": "<unk>", "fuse_unk": false`, []int{0, 1, 1, 0}, []int{1, 1, 1}},
		{`"unk_token": "<unk>", "fuse_unk": true`, []int{0, 1, 0}, []int{1, 1}},
	} {
		data := fmt.Sprintf(`{"model": {"type": "BPE", %s, "vocab": {"a": 0, "<unk>": 1}, "merges": []},
			"pre_tokenizer": %s, "decoder": {"type": "ByteLevel"}}`, c.model, qwenPreTokenizer)
		tok, err := Parse([]byte(data))
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.Encode("axxa"); !slices.Equal(got, c.want) {
			t.Errorf("%s: Encode(axxa) = %v, want %v", c.model, got, c.want)
		}
		if got := tok.Encode("x x"); !slices.Equal(got, c.only) {
			t.Errorf("%s: Encode(\"x x\") = %v, want %v", c.model, got, c.only)
		}
	}
}

func TestMatcherLeftmostLongest(t *testing.T) {
	pats := []string{"ab", "abc", "bcd", "d"}
	var toks []*addedToken
	for i, p := range pats {
		toks = append(toks, &addedToken{id: int32(i), content: p})
	}
	m := newMatcher(toks, pats)
	var got []string
	for _, p := range m.split(nil, "xabcdab bcd") {
		s := p.text
		if p.tok != nil {
			s = "[" + s + "]"
		}
		got = append(got, s)
	}
	want := []string{"x", "[abc]", "[d]", "[ab]", " ", "[bcd]"}
	if !slices.Equal(got, want) {
		t.Errorf("split = %q, want %q", got, want)
	}
}

func TestScannerInt(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int32
		ok   bool
	}{
		{"0", 0, true}, {"151643", 151643, true}, {"-7", -7, true},
		{"2147483647", 2147483647, true}, {"-2147483648", -2147483648, true},
		{"2147483648", 0, false}, {"99999999999999999999", 0, false},
		{"1.5", 0, false}, {"1e3", 0, false}, {"01", 0, false}, {"-", 0, false}, {"x", 0, false},
	} {
		s := &scanner{data: []byte(c.in + ",")}
		got, err := s.int()
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("int(%q) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}
