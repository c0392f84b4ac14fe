package chat

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fmoe/fmoe/tokenizer"
)

// The rendered prompt must tokenize to the ids Hugging Face produced, which
// checks special tokens such as <|im_start|> survive rendering intact.
func TestGoldenTokenIDs(t *testing.T) {
	tok, err := tokenizer.Load(filepath.Join(tinyDir, "tokenizer", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := LoadTemplate(filepath.Join(tinyDir, "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range loadGolden(t) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			text, err := tpl.Render(c.Messages, c.Tools, c.renderOptions(t))
			if err != nil {
				t.Fatal(err)
			}
			if got := tok.Encode(text); !slices.Equal(got, c.IDs) {
				t.Fatalf("ids differ\n got %v\nwant %v", got, c.IDs)
			}
		})
	}
}
