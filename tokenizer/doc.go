// Package tokenizer encodes and decodes text with the byte-level BPE
// tokenizers shipped with Qwen3 and Qwen3.5 checkpoints, reproducing Hugging
// Face tokenizers bit for bit.
//
// It reads the checkpoint's tokenizer.json and runs the same pipeline as
// tokenizers' encode(text, add_special_tokens=False):
//
//  1. added tokens whose "normalized" flag is false are split out of the raw
//     text (leftmost-longest, honouring lstrip/rstrip/single_word);
//  2. every remaining segment is NFC-normalised on its own, then added tokens
//     with "normalized": true are split out of it;
//  3. the Split pre-tokenizer cuts what is left into words with the Qwen
//     regular expression, implemented here as a hand-written scanner because
//     Go's regexp lacks the look-ahead in `\s+(?!\S)`;
//  4. each word's bytes become GPT-2 byte-level symbols, merged by BPE rank.
//
// Decoding maps tokens back to bytes and replaces invalid UTF-8 the way
// Rust's String::from_utf8_lossy does, so output matches tokenizers' decode
// with skip_special_tokens=False.
package tokenizer
