package tokenizer

import (
	"sync/atomic"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// NFC leaves a string alone when every character in it is "inert": already
// in NFC on its own, canonical combining class 0 (nothing to reorder) and
// unable to compose with a character before it. Then no composition,
// decomposition or reordering can happen anywhere in the string. Checking
// that with a bitmap is several times faster than norm's quick check, which
// took a fifth of Encode on mixed text, and nearly all text passes.
//
// The bitmap is filled lazily, 256 code points at a time (about 50 µs
// each), since text touches few blocks and a full table would cost Parse
// 10 ms.
var nfcInert [utf8.MaxRune>>8 + 1]atomic.Pointer[[4]uint64]

func inertBlock(block rune) *[4]uint64 {
	if b := nfcInert[block].Load(); b != nil {
		return b
	}
	b := new([4]uint64)
	for r := block << 8; r < (block+1)<<8; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue // surrogates never decode from UTF-8
		}
		s := string(r)
		if norm.NFC.PropertiesString(s).BoundaryBefore() && norm.NFC.IsNormalString(s) {
			b[(r&0xFF)>>6] |= 1 << (r & 63)
		}
	}
	// Racing goroutines compute the same bits, so either store is fine.
	nfcInert[block].Store(b)
	return b
}

// isInert reports whether NFC would leave r unchanged in any string of
// inert characters.
func isInert(r rune) bool {
	return inertBlock(r >> 8)[(r&0xFF)>>6]>>(r&63)&1 != 0
}

// nfc returns the NFC form of s, skipping the work when s is made of inert
// characters (ASCII always is).
func nfc(s string) string {
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || !isInert(r) {
			return norm.NFC.String(s)
		}
		i += n
	}
	return s
}
