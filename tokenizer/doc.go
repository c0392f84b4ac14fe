// Package tokenizer encodes and decodes text with the byte-level BPE
// tokenizers shipped with Qwen3, Qwen3.5 and DeepSeek-V3 (V3, R1, V3.1)
// checkpoints, reproducing Hugging Face tokenizers id for id (and the GPT-4
// split regex of GLM-4.5's), and Kimi-K2's tiktoken tokenizer, reproducing
// tiktoken.
//
// LoadDir reads a checkpoint's tokenizer.json, or Kimi-K2's tiktoken.model
// and tokenizer_config.json (LoadTiktoken); Load (or Parse) reads a
// tokenizer.json. Encode, Decode and
// the streaming Decoder then behave like tokenizers'
// encode(text, add_special_tokens=False) and
// decode(ids, skip_special_tokens=False). A Tokenizer is safe for
// concurrent use.
//
// Encoding runs the same pipeline as tokenizers:
//
//  1. added tokens whose "normalized" flag is false are split out of the raw
//     text (leftmost-longest, honouring lstrip, rstrip and single_word);
//  2. every remaining segment is NFC-normalised on its own, then added tokens
//     with "normalized": true are split out of it;
//  3. the Split pre-tokenizers cut what is left into words, each stage
//     cutting the pieces of the one before (Qwen has one regex, DeepSeek-V3
//     three: digit groups, CJK runs, words); each regex is a hand-written
//     scanner because Go's regexp lacks the look-ahead in `\s+(?!\S)`;
//  4. each word's bytes become GPT-2 byte-level symbols, merged by BPE rank.
//
// Decoding maps tokens back to bytes and replaces invalid UTF-8 the way
// Rust's String::from_utf8_lossy does.
//
// Supported tokenizer.json settings: normalizer NFC, an empty Sequence or
// null; pre_tokenizer a Sequence of Splits (the Qwen3, Qwen3.5, GPT-4 or
// DeepSeek-V3 regexes, Isolated) and ByteLevel
// (add_prefix_space and use_regex false); model BPE with unk_token,
// fuse_unk, byte_fallback and ignore_merges, merges as "a b" strings or
// [a, b] pairs; decoder ByteLevel. Anything else is rejected with an error
// naming the field. The post_processor is ignored, as it adds nothing when
// special tokens are not requested; so are truncation and padding: Encode
// always returns every id.
package tokenizer
