package tokenizer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"slices"
	"sync"
	"testing"
)

const (
	tinyPath        = "../testdata/tiny/tokenizer/tokenizer.json"
	tinyGoldenPath  = "../testdata/tiny/golden/tokenizer.json"
	qwen3GzPath     = "../testdata/qwen3-tokenizer/tokenizer.json.gz"
	qwen3GoldenPath = "../testdata/qwen3-tokenizer/golden.json"
)

type goldenCase struct {
	Text    string   `json:"text"`
	IDs     []int    `json:"ids"`
	Tokens  []string `json:"tokens"`
	Decoded string   `json:"decoded"`
}

type goldenFile struct {
	Tokenizer string       `json:"tokenizer"`
	Reference string       `json:"reference"`
	Cases     []goldenCase `json:"cases"`
}

func readGolden(t testing.TB, path string) goldenFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var g goldenFile
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(g.Cases) == 0 {
		t.Fatalf("%s: no cases", path)
	}
	return g
}

var qwen3JSON = sync.OnceValues(func() ([]byte, error) { return gunzipFile(qwen3GzPath) })

// gunzipFile is the content of a gzipped test file.
func gunzipFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, zr); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var (
	qwen3Tok = sync.OnceValues(func() (*Tokenizer, error) {
		data, err := qwen3JSON()
		if err != nil {
			return nil, err
		}
		return Parse(data)
	})
	tinyTok = sync.OnceValues(func() (*Tokenizer, error) { return Load(tinyPath) })
)

func loadQwen3(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := qwen3Tok()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func loadTiny(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := tinyTok()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// wordCase is a text and the words a pre-tokenizer must cut it into.
type wordCase struct {
	text string
	want []string
}

// checkWords runs p over every case and reports each cut that differs.
func checkWords(t *testing.T, p pretokenizer, cases []wordCase) {
	t.Helper()
	for _, c := range cases {
		var got []string
		for _, w := range p.appendWords(nil, c.text) {
			got = append(got, c.text[w[0]:w[1]])
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("words(%q) = %q, want %q", c.text, got, c.want)
		}
	}
}
