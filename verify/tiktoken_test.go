package verify

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/pack"
)

// A pack whose tokenizer is Kimi-K2's tiktoken.model (no tokenizer.json) verifies clean.
func TestTiktokenPackHasItsTokenizer(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if out, err := exec.Command("cp", "-r", tiny+"mlx-4bit", src).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	var ranks strings.Builder
	for b := range 256 {
		fmt.Fprintf(&ranks, "%s %d\n", base64.StdEncoding.EncodeToString([]byte{byte(b)}), b)
	}
	files := map[string]string{"tiktoken.model": ranks.String(), "tokenizer_config.json": `{"tokenizer_class": "TikTokenTokenizer"}`}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(src, "tokenizer.json")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "model")
	if _, err := pack.Convert(context.Background(), pack.Options{In: src, Out: dir}); err != nil {
		t.Fatal(err)
	}
	if r := run(t, Options{Model: dir}); !r.OK {
		t.Fatalf("problems: %v", r.Problems)
	}
}
