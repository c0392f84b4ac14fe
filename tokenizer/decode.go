package tokenizer

import "unicode/utf8"

// Decode returns the text of ids like tokenizers' decode(ids,
// skip_special_tokens=False): special tokens are included, unknown ids are
// skipped, and bytes that do not form valid UTF-8 become U+FFFD.
func (t *Tokenizer) Decode(ids []int) string {
	b := make([]byte, 0, 4*len(ids)) // tokens average under 4 bytes
	for _, id := range ids {
		b = t.appendBytes(b, id)
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return string(appendLossy(nil, b))
}

func (t *Tokenizer) appendBytes(dst []byte, id int) []byte {
	if id < 0 || id >= len(t.tokens) {
		return dst
	}
	return appendTokenBytes(dst, t.tokens[id])
}

// Decoder turns a stream of ids into text as they arrive. A character whose
// UTF-8 bytes span several tokens (common for CJK and emoji) is held back
// until it is complete, so callers can print each piece at once. The
// concatenated output equals Decode of all the ids.
type Decoder struct {
	t       *Tokenizer
	pending []byte
}

// NewDecoder returns a streaming decoder.
func (t *Tokenizer) NewDecoder() *Decoder { return &Decoder{t: t} }

// Add decodes one more id and returns the text that is now complete.
func (d *Decoder) Add(id int) string {
	d.pending = d.t.appendBytes(d.pending, id)
	cut := incompleteTail(d.pending)
	out := string(appendLossy(nil, d.pending[:cut]))
	d.pending = append(d.pending[:0], d.pending[cut:]...)
	return out
}

// Flush returns whatever is held back, with an unfinished character
// replaced by U+FFFD, and resets the decoder.
func (d *Decoder) Flush() string {
	out := string(appendLossy(nil, d.pending))
	d.pending = d.pending[:0]
	return out
}

// incompleteTail returns where a trailing, possibly unfinished, UTF-8
// sequence starts in b, or len(b) when there is none. A lead byte is never a
// continuation byte, so it always starts a sequence in appendLossy's scan:
// cutting there decodes the same as decoding everything at once.
func incompleteTail(b []byte) int {
	for i := max(0, len(b)-utf8.UTFMax+1); i < len(b); i++ {
		if b[i] < 0xC0 {
			continue
		}
		if n, complete := validPrefix(b[i:]); !complete && i+n == len(b) {
			return i
		}
	}
	return len(b)
}
