package tokenizer

import (
	"bytes"
	"testing"
)

const gpt4GoldenPath = "../testdata/qwen3-tokenizer/gpt4-pattern-golden.json"

// gpt4Variant is Qwen3's tokenizer.json with its split regex changed to the
// GPT-4 one (digits in groups of three), as scripts/goldens/gpt4_pattern_tokenizers.cjs
// builds it.
func gpt4Variant(t *testing.T) *Tokenizer {
	t.Helper()
	data, err := qwen3JSON()
	if err != nil {
		t.Fatal(err)
	}
	qwen := []byte(`\\p{N}| ?[^\\s\\p{L}\\p{N}]+`)
	if bytes.Count(data, qwen) != 1 {
		t.Fatal("the Qwen3 regex is not in tokenizer.json exactly once")
	}
	tok, err := Parse(bytes.Replace(data, qwen, []byte(`\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+`), 1))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestGoldenGPT4Pattern checks the GPT-4 split regex, which GLM-4.5's (and
// Llama 3's) tokenizer.json uses, against Hugging Face tokenizers on Qwen3's
// vocabulary: GLM-4.5's own tokenizer.json is not in the repository.
func TestGoldenGPT4Pattern(t *testing.T) {
	checkGolden(t, gpt4Variant(t), readGolden(t, gpt4GoldenPath))
}
