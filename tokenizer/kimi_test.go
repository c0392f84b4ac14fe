package tokenizer

import (
	"encoding/base64"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const (
	kimiDir        = "../testdata/kimi-k2-tokenizer/"
	kimiGoldenPath = kimiDir + "golden.json"
)

var kimiTok = sync.OnceValues(func() (*Tokenizer, error) {
	ranks, err := gunzipFile(kimiDir + "tiktoken.model.gz")
	if err != nil {
		return nil, err
	}
	config, err := os.ReadFile(kimiDir + "tokenizer_config.json")
	if err != nil {
		return nil, err
	}
	return ParseTiktoken(ranks, config)
})

func loadKimi(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := kimiTok()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestGoldenKimiK2 encodes adversarial strings, runs past Kimi's 25,000
// character cut and every family's rendered chat prompts with Kimi-K2's
// shipped tiktoken.model and compares with tiktoken
// (scripts/goldens/kimi_tokenizer*.py|cjs).
func TestGoldenKimiK2(t *testing.T) {
	checkGolden(t, loadKimi(t), readGolden(t, kimiGoldenPath))
}

func TestKimiSpecials(t *testing.T) {
	tok := loadKimi(t)
	for _, c := range []struct {
		s       string
		id      int
		special bool
	}{
		{"[BOS]", 163584, true}, {"<|im_end|>", 163586, true}, {"<|im_middle|>", 163601, true},
		{"<|tool_call_begin|>", 163597, false}, {"<|reserved_token_163589|>", 163589, true},
		{"[PAD]", 163839, true}, {"<|reserved_token_163841|>", 163841, true},
	} {
		if id, ok := tok.TokenID(c.s); !ok || id != c.id || tok.IsSpecial(id) != c.special {
			t.Errorf("TokenID(%q) = %d %v special %v, want %d special %v", c.s, id, ok, tok.IsSpecial(id), c.id, c.special)
		}
	}
	if n := tok.VocabSize(); n != 163842 {
		t.Errorf("VocabSize = %d, want 163842 (163,584 ranks + 258 special ids)", n)
	}
	for id, want := range map[int]bool{163839: false, 163840: true, 163841: true, 163842: false} {
		if tok.ExtraReserved(id) != want {
			t.Errorf("ExtraReserved(%d) = %v, want %v", id, !want, want)
		}
	}
	if loadQwen3(t).ExtraReserved(151668) {
		t.Error("a tokenizer.json tokenizer has extra reserved ids")
	}
}

// TestKimiWords pins the pre-tokenizer's words on each alternative of
// Kimi's pattern and the backtracking between its two letter rules (the
// expected words are Python regex's findall of the pattern).
func TestKimiWords(t *testing.T) {
	p := pretokenizer{stages: []pattern{newKimiWord()}}
	cases := []wordCase{
		{"Hello, World!", []string{"Hello", ",", " World", "!"}},
		{"中文and日本語カナ", []string{"中文", "and", "日本語", "カナ"}},
		{"HTTPServer iPhone", []string{"HTTPServer", " i", "Phone"}},
		{"HELLO's DON'T", []string{"HELLO's", " DON'T"}},
		{"ǅungla Ǆ", []string{"ǅungla", " Ǆ"}},
		{"x1234y", []string{"x", "123", "4", "y"}},
		{"a\u0301b \u0301x", []string{"a\u0301b", " \u0301x"}},
		{"  x\n\n  y  ", []string{" ", " x", "\n\n", " ", " y", "  "}},
		{"'ſ x'ſ", []string{"'ſ", " x'ſ"}},
		{"〇⺀a", []string{"〇⺀", "a"}},
	}
	checkWords(t, p, cases)
}

func TestKimiChunks(t *testing.T) {
	long := strings.Repeat("a", 2*kimiMaxRun+3) + "  " + strings.Repeat("b", 5)
	var got []int
	kimiChunks(long, func(s string) { got = append(got, len(s)) })
	if want := []int{kimiMaxRun, kimiMaxRun, 3 + 2 + 5}; !slices.Equal(got, want) {
		t.Errorf("piece lengths %v, want %v", got, want)
	}
}

func TestParseTiktokenErrors(t *testing.T) {
	var ranks strings.Builder
	for b := range 256 {
		ranks.WriteString(b64([]byte{byte(b)}))
		ranks.WriteString(" ")
		ranks.WriteString(itoa(b))
		ranks.WriteString("\n")
	}
	good := ranks.String()
	cfg := `{"tokenizer_class": "TikTokenTokenizer", "added_tokens_decoder": {"256": {"content": "[BOS]", "special": true}}}`
	if _, err := ParseTiktoken([]byte(good), []byte(cfg)); err != nil {
		t.Fatalf("minimal tokenizer: %v", err)
	}
	for _, c := range []struct{ ranks, cfg, want string }{
		{good + "YWI= 7\n", cfg, "tiktoken.model: line 257: rank \"7\", want 256"},
		{good + "!!! 256\n", cfg, "not non-empty base64"},
		{good + "YQ== 256\n", cfg, "repeats rank 97"},
		{good + "YWI=\n", cfg, "got 1 fields"},
		{good[strings.Index(good, "\n")+1:], cfg, "rank \"1\", want 0"},
		{good, `{"tokenizer_class": "GPT2Tokenizer"}`, "tokenizer_class is \"GPT2Tokenizer\""},
		{good, `{"tokenizer_class": "TikTokenTokenizer", "added_tokens_decoder": {"5": {"content": "x"}}}`, "added_tokens_decoder.5: id outside"},
		{good, `{"tokenizer_class": "TikTokenTokenizer", "added_tokens_decoder": {"256": {"content": ""}}}`, "missing content"},
		{good, `{"tokenizer_class": "TikTokenTokenizer", "added_tokens_decoder": {"256": {"content": "<|reserved_token_257|>"}}}`, "names both"},
	} {
		_, err := ParseTiktoken([]byte(c.ranks), []byte(c.cfg))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want it to contain %q", err, c.want)
		}
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func itoa(i int) string { return strconv.Itoa(i) }

// LoadDir prefers tokenizer.json, falls back on tiktoken.model, and says
// what it looked for when a directory has neither.
func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "neither tokenizer.json nor tiktoken.model") {
		t.Errorf("empty dir: %v", err)
	}
	var ranks strings.Builder
	for b := range 256 {
		ranks.WriteString(b64([]byte{byte(b)}) + " " + itoa(b) + "\n")
	}
	write := func(name, data string) {
		if err := os.WriteFile(dir+"/"+name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("tiktoken.model", ranks.String())
	if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "needs its tokenizer_config.json") {
		t.Errorf("no config: %v", err)
	}
	write("tokenizer_config.json", `{"tokenizer_class": "TikTokenTokenizer"}`)
	tok, err := LoadDir(dir)
	if err != nil || tok.VocabSize() != 256+kimiReserved {
		t.Fatalf("tiktoken dir: %v", err)
	}
	hf, err := os.ReadFile(tinyPath)
	if err != nil {
		t.Fatal(err)
	}
	write("tokenizer.json", string(hf))
	if tok, err = LoadDir(dir); err != nil || tok.VocabSize() != loadTiny(t).VocabSize() {
		t.Errorf("tokenizer.json is not preferred: %v", err)
	}
}
