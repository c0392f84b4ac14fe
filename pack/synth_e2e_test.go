package pack_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/chat"
	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/pack"
	"github.com/fmoe/fmoe/tokenizer"
	"github.com/fmoe/fmoe/verify"
)

// synth -> convert -> verify used to end in "tokenizer.json missing from the manifest's files".
// The synthetic checkpoint now carries a tokenizer and chat template: both layouts pack, the
// pack verifies (against the source too), and the packed tokenizer and template work.
func TestSynthConvertVerify(t *testing.T) {
	for _, layout := range []string{"mlx-4bit", "hf"} {
		t.Run(layout, func(t *testing.T) {
			ctx := context.Background()
			src, out := filepath.Join(t.TempDir(), "ck"), filepath.Join(t.TempDir(), "packed")
			if _, err := pack.Synth(ctx, pack.SynthOptions{Preset: "tiny", Layers: 4, Layout: layout, Out: src, Seed: 3}); err != nil {
				t.Fatal(err)
			}
			if _, err := pack.Convert(ctx, pack.Options{In: src, Out: out}); err != nil {
				t.Fatal(err)
			}
			rep, err := verify.Run(ctx, verify.Options{Model: out, Source: src})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK {
				t.Fatalf("verify failed: %+v", rep.Problems)
			}
			tok, err := tokenizer.Load(filepath.Join(out, "tokenizer.json"))
			if err != nil {
				t.Fatal(err)
			}
			man, err := format.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			m := man.Config.EOSTokenIDs
			if id, ok := tok.TokenID("<|im_end|>"); !ok || len(m) == 0 || m[0] != id {
				t.Errorf("config eos %v, tokenizer <|im_end|> %d", m, id)
			}
			tmpl, err := chat.LoadTemplate(out)
			if err != nil {
				t.Fatal(err)
			}
			text, err := tmpl.Render([]chat.Message{{Role: "user", Content: "hello"}}, nil, chat.RenderOptions{AddGenerationPrompt: true})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(text, "<|im_start|>user\nhello<|im_end|>") {
				t.Errorf("rendered %q", text)
			}
			if ids := tok.Encode(text); tok.Decode(ids) != text {
				t.Errorf("tokenizer does not round-trip the rendered prompt")
			}
		})
	}
}
