package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// TestInertStringsAreNFC checks the claim nfc relies on: a string made only
// of inert characters is already in NFC. It tries every pair of inert
// characters from blocks where composition is common, then random strings
// over all of Unicode.
func TestInertStringsAreNFC(t *testing.T) {
	var sample []rune
	for _, rg := range [][2]rune{{0, 0x250}, {0x300, 0x370}, {0x1100, 0x1200}, {0x3040, 0x3100}, {0xAC00, 0xAC40}, {0x1E00, 0x1F00}} {
		for r := rg[0]; r < rg[1]; r++ {
			if isInert(r) {
				sample = append(sample, r)
			}
		}
	}
	for _, a := range sample {
		for _, b := range sample {
			if s := string(a) + string(b); !norm.NFC.IsNormalString(s) {
				t.Fatalf("inert pair %q (U+%04X U+%04X) is not NFC", s, a, b)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b strings.Builder
		for b.Len() < 24 {
			r := rune(rng.IntN(0x30000))
			if rng.IntN(2) == 0 {
				r = rune(rng.IntN(0x3100))
			}
			if utf8.ValidRune(r) && isInert(r) {
				b.WriteRune(r)
			}
		}
		if s := b.String(); !norm.NFC.IsNormalString(s) {
			t.Fatalf("inert string %+q is not NFC", s)
		}
	}
}

func TestNFC(t *testing.T) {
	for _, s := range []string{"", "plain ascii", "café", "cafe\u0301", "한국어", "\u1100\u1161\u11a8", "ｶﾞ", "か\u3099", "Å", "\u212b", "a\xffb", "😀👍🏽"} {
		if got, want := nfc(s), norm.NFC.String(s); got != want {
			t.Errorf("nfc(%+q) = %+q, want %+q", s, got, want)
		}
	}
}
