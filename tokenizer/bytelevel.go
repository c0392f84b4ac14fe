package tokenizer

import "unicode/utf8"

// GPT-2's byte-level alphabet gives every byte a printable code point so BPE
// vocabularies never contain whitespace or control characters: printable
// Latin-1 bytes map to themselves and the other 68 bytes, in order, to
// U+0100 onwards. Every mapped code point is below byteLevelLimit.
const byteLevelLimit = 0x144

var (
	byteToRune [256]rune
	// runeToByte is indexed by code point; -1 marks code points outside the
	// alphabet (tokens containing them decode to their own UTF-8 bytes).
	runeToByte [byteLevelLimit]int16
	// byteToUTF8 caches the UTF-8 form of byteToRune so BPE can build byte-level
	// strings without encoding runes in the hot loop.
	byteToUTF8 [256]string
)

func init() {
	for i := range runeToByte {
		runeToByte[i] = -1
	}
	n := rune(0)
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		r := rune(b)
		if !printable {
			r = 256 + n
			n++
		}
		byteToRune[b] = r
		runeToByte[r] = int16(b)
		byteToUTF8[b] = string(r)
	}
}

// appendTokenBytes appends the raw bytes a token stands for, as tokenizers'
// ByteLevel decoder does: byte-level characters map back to their byte, and a
// token with any character outside the alphabet (typically an added token
// such as "<think>" containing non-ASCII text) contributes its UTF-8 as is.
func appendTokenBytes(dst []byte, tok string) []byte {
	start := len(dst)
	for i := 0; i < len(tok); {
		// Every byte-level character is below U+0144, so it is one ASCII byte
		// or a two-byte sequence; decoding those inline is twice as fast as
		// ranging over runes.
		c := tok[i]
		r, n := rune(c), 1
		if c >= utf8.RuneSelf {
			if c < 0xC2 || c > 0xC5 || i+1 >= len(tok) || tok[i+1]&0xC0 != 0x80 {
				return append(dst[:start], tok...)
			}
			r, n = rune(c&0x1F)<<6|rune(tok[i+1]&0x3F), 2
		}
		if r >= byteLevelLimit || runeToByte[r] < 0 {
			return append(dst[:start], tok...)
		}
		dst = append(dst, byte(runeToByte[r]))
		i += n
	}
	return dst
}

// appendLossy appends b to dst as valid UTF-8, replacing each maximal
// ill-formed subsequence with U+FFFD. This is the Unicode "substitution of
// maximal subparts" practice that Rust's String::from_utf8_lossy follows; Go's
// strings.ToValidUTF8 collapses whole runs instead, so it would not match.
func appendLossy(dst []byte, b []byte) []byte {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		n, complete := validPrefix(b[i:])
		if complete {
			dst = append(dst, b[i:i+n]...)
		} else {
			dst = append(dst, "\uFFFD"...)
		}
		i += n
	}
	return dst
}

// validPrefix inspects the multi-byte sequence that starts b (b[0] >= 0x80).
// It returns the length of the longest prefix that is, or could still become,
// a well-formed UTF-8 character (at least 1), and whether that prefix is a
// whole character. An incomplete result at the end of b means more bytes may
// complete it; anywhere else it is a maximal ill-formed subpart.
func validPrefix(b []byte) (n int, complete bool) {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF) // allowed range of the second byte
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 2
	case c == 0xE0:
		need, lo = 3, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 3
	case c == 0xED:
		need, hi = 3, 0x9F // excludes UTF-16 surrogates
	case c == 0xF0:
		need, lo = 4, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 4
	case c == 0xF4:
		need, hi = 4, 0x8F // caps at U+10FFFF
	default:
		return 1, false
	}
	n = 1
	for n < need {
		if n >= len(b) {
			return n, false
		}
		x := b[n]
		if n == 1 {
			if x < lo || x > hi {
				return n, false
			}
		} else if x < 0x80 || x > 0xBF {
			return n, false
		}
		n++
	}
	return n, true
}
