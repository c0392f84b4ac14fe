package pack

import (
	"bytes"
	"compress/gzip"
	"embed"
	"encoding/json"
	"fmt"
	"io"
)

// synthtok holds the tiny fixture's tokenizer (testdata/tiny/tokenizer: byte-level BPE with the
// Qwen3.5 pre-tokenizer, special tokens and chat template; 2,048 ids, which fit every preset's
// vocabulary), so a synthetic checkpoint is complete: convert copies it and fmoe-verify and
// fmoe-run find what they need, as for a downloaded model.
//
//go:embed synthtok/tokenizer.json.gz synthtok/tokenizer_config.json
var synthtok embed.FS

// synthEOS is <|im_end|> in that tokenizer, the token a chat turn ends with.
const synthEOS = 2037

// synthTokenizerFiles returns the tokenizer files synth writes beside the shards: tokenizer.json,
// tokenizer_config.json (with the chat template inside, as Hugging Face tokenizers save it) and
// chat_template.jinja (where transformers 5 and llama.cpp's converter also look).
func synthTokenizerFiles() (map[string][]byte, error) {
	gz, err := synthtok.ReadFile("synthtok/tokenizer.json.gz")
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("synth tokenizer: %w", err)
	}
	tok, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("synth tokenizer: %w", err)
	}
	cfg, err := synthtok.ReadFile("synthtok/tokenizer_config.json")
	if err != nil {
		return nil, err
	}
	var c struct {
		ChatTemplate string `json:"chat_template"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil || c.ChatTemplate == "" {
		return nil, fmt.Errorf("synth tokenizer: tokenizer_config.json has no chat_template (%v)", err)
	}
	return map[string][]byte{"tokenizer.json": tok, "tokenizer_config.json": cfg, "chat_template.jinja": []byte(c.ChatTemplate)}, nil
}
