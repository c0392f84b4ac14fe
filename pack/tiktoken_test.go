package pack

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/tokenizer"
)

// writeTiktoken replaces a checkpoint's tokenizer.json by a Kimi-K2 style tokenizer: a small
// tiktoken.model (the 256 bytes and "ab") and a TikTokenTokenizer tokenizer_config.json.
func writeTiktoken(t *testing.T, dir string) {
	t.Helper()
	var ranks strings.Builder
	for b := range 256 {
		fmt.Fprintf(&ranks, "%s %d\n", base64.StdEncoding.EncodeToString([]byte{byte(b)}), b)
	}
	fmt.Fprintf(&ranks, "%s 256\n", base64.StdEncoding.EncodeToString([]byte("ab")))
	cfg := `{"tokenizer_class": "TikTokenTokenizer", "added_tokens_decoder": {"257": {"content": "[BOS]", "special": true}}}`
	for name, data := range map[string]string{"tiktoken.model": ranks.String(), "tokenizer_config.json": cfg} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Fatal(err)
	}
}

// A checkpoint with Kimi-K2's tiktoken.model instead of tokenizer.json packs without a warning,
// carries the file into the pack, and the pack's tokenizer loads.
func TestConvertTiktokenTokenizer(t *testing.T) {
	src := copyDir(t, tiny+"mlx-4bit")
	writeTiktoken(t, src)
	out := filepath.Join(t.TempDir(), "o")
	var log bytes.Buffer
	if _, err := Convert(context.Background(), Options{In: src, Out: out, Log: &log}); err != nil {
		t.Fatal(err)
	}
	m, err := format.ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log.String(), "tokenizer") {
		t.Errorf("warned about a tokenizer that is there: %q", log.String())
	}
	if !slices.ContainsFunc(m.Files, func(f format.SideFile) bool { return f.Name == "tiktoken.model" }) {
		t.Errorf("the pack's files %v lack tiktoken.model", m.Files)
	}
	tok, err := tokenizer.LoadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("[BOS]abc"); !slices.Equal(got, []int{257, 256, 'c'}) {
		t.Errorf("Encode = %v, want [257 256 99]", got)
	}
}

// The tiktoken tokenizer's 258 special ids must fit the embedding, except the last two, which
// Kimi-K2 numbers past it.
func TestCheckTiktokenVocab(t *testing.T) {
	dir := copyDir(t, tiny+"mlx-4bit")
	writeTiktoken(t, dir)
	for _, c := range []struct {
		vocab int
		want  string
	}{
		{257 + 258, ""},
		{257 + 256, ""},
		{257 + 255, "tiktoken.model has 515 tokens but config.json's vocab_size is 512"},
	} {
		err := checkTokenizer(dir, &format.Config{VocabSize: c.vocab})
		if (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("vocab_size %d: error %v, want %q", c.vocab, err, c.want)
		}
	}
}
