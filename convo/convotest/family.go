package convotest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/fmoe/fmoe/pack"
)

// Family is one of the tiny checkpoints of testdata/arch given a published chat template and a
// tokenizer whose added tokens are the family's markup.
type Family struct {
	Arch     string   // testdata/arch/<Arch>/hf
	Template string   // chat/testdata/families/<Template>
	Special  []string // the family's added tokens, at most 13 (the ids past the tiny vocabulary)
	Config   map[string]any
}

// Families are the chat formats beside Qwen3.5 on the architectures that ship them.
var Families = map[string]Family{
	"glm45": {Arch: "glm4_moe", Template: "glm45.jinja",
		Special: []string{"<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>",
			"<think>", "</think>", "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>"},
		Config: map[string]any{"eos_token": "<|endoftext|>"}},
	"deepseek": {Arch: "deepseek_v3", Template: "deepseek_v31.jinja",
		Special: []string{"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>",
			"<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>",
			"<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>"},
		Config: map[string]any{"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}},
	"kimi_k2": {Arch: "deepseek_v3", Template: "kimi_k2.jinja",
		Special: []string{"[BOS]", "[EOS]", "<|im_end|>", "<|im_user|>", "<|im_assistant|>", "<|im_system|>", "<|im_middle|>",
			"<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", "<|tool_call_begin|>", "<|tool_call_argument_begin|>",
			"<|tool_call_end|>", "[UNK]"},
		Config: map[string]any{"bos_token": "[BOS]", "eos_token": "[EOS]"}},
}

// PackFamily packs the family's tiny checkpoint at 16 bits with its chat template and a
// tokenizer (the tiny Qwen3.5 byte-level BPE, its added tokens renamed to the family's), and
// returns the pack's directory. root is the repository root relative to the test's package.
func PackFamily(t testing.TB, root string, f Family) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), f.Arch)
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	hf := filepath.Join(root, "testdata/arch", f.Arch, "hf")
	entries, err := os.ReadDir(hf)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		abs, err := filepath.Abs(filepath.Join(hf, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(abs, filepath.Join(src, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	tpl, err := os.ReadFile(filepath.Join(root, "chat/testdata/families", f.Template))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(src, "chat_template.jinja"), tpl)
	cfg, _ := json.Marshal(f.Config)
	write(t, filepath.Join(src, "tokenizer_config.json"), cfg)
	write(t, filepath.Join(src, "tokenizer.json"), familyTokenizer(t, root, f.Special))
	out := filepath.Join(t.TempDir(), f.Arch+"-fmoe")
	if _, err := pack.Convert(context.Background(), pack.Options{In: src, Out: out, Bits: 16}); err != nil {
		t.Fatal(err)
	}
	return out
}

func write(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// familyTokenizer is testdata/tiny's tokenizer.json with its added tokens renamed, in order,
// to special (ids 2035..2047, inside the arch fixtures' vocabulary of 2048).
func familyTokenizer(t testing.TB, root string, special []string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "testdata/tiny/tokenizer/tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tok map[string]any
	if err := json.Unmarshal(data, &tok); err != nil {
		t.Fatal(err)
	}
	added := tok["added_tokens"].([]any)
	if len(special) > len(added) {
		t.Fatalf("%d special tokens, the tiny tokenizer has room for %d", len(special), len(added))
	}
	for i, s := range special {
		added[i].(map[string]any)["content"] = s
	}
	tok["added_tokens"] = added[:len(special)]
	out, err := json.Marshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
