package tokenizer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"testing"
)

const (
	deepseekGzPath     = "../testdata/deepseek-v3-tokenizer/tokenizer-trimmed.json.gz"
	deepseekGoldenPath = "../testdata/deepseek-v3-tokenizer/golden.json"
)

func loadGz(t testing.TB, path string) *Tokenizer {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, zr); err != nil {
		t.Fatal(err)
	}
	tok, err := Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestGoldenDeepSeekV3 encodes adversarial strings and the families' rendered chat prompts
// with DeepSeek-V3's tokenizer (its three Split stages, 818 added tokens) and compares with
// Hugging Face tokenizers. The tokenizer is the shipped one trimmed to the merges these strings
// use, which the generator checked encodes every string as the full one does
// (scripts/goldens/chat_families.py --trim).
func TestGoldenDeepSeekV3(t *testing.T) {
	g := readGolden(t, deepseekGoldenPath)
	var extra struct {
		Mismatches []string `json:"trimmed_mismatches"`
	}
	data, _ := os.ReadFile(deepseekGoldenPath)
	if err := json.Unmarshal(data, &extra); err != nil || extra.Mismatches == nil || len(extra.Mismatches) > 0 {
		t.Fatalf("the trimmed tokenizer was not checked against the full one: %v %q", err, extra.Mismatches)
	}
	checkGolden(t, loadGz(t, deepseekGzPath), g)
}

// TestDeepSeekWords pins the pre-tokenizer's words on the alternatives each stage has.
func TestDeepSeekWords(t *testing.T) {
	var p pretokenizer
	for _, re := range []string{deepseekDigits, deepseekCJK, deepseekWords} {
		pat, ok := newPattern(re)
		if !ok {
			t.Fatalf("pattern %q not implemented", re)
		}
		p.stages = append(p.stages, pat)
	}
	cases := []wordCase{
		{"Hello, World!", []string{"Hello", ",", " World", "!"}},
		{"x1y22z333w4444", []string{"x", "1", "y", "22", "z", "333", "w", "444", "4"}},
		{"don't (a+b)", []string{"don", "'t", " (", "a", "+b", ")"}},
		{"中文and日本語カナ", []string{"中文", "and", "日本語カナ"}},
		{"한국어 text", []string{"한국어", " text"}},
		{"  x\n\n  y  ", []string{" ", " x", "\n\n", " ", " y", "  "}},
		{"a\u0301b 😀!", []string{"a\u0301b", " 😀!"}},
		{"\x01\x02ab", []string{"\x01", "\x02ab"}}, // a control character may lead a word
		{"12 34", []string{"12", " ", "34"}},
		{"...\r\n", []string{"...\r\n"}},
	}
	checkWords(t, p, cases)
}
