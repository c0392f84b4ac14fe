package tokenizer

import (
	"sync"
	"unicode"
)

// kimiPattern is the pre-tokenizer regex of Kimi-K2 (pat_str in the
// checkpoint's tokenization_kimi.py, which hands it to tiktoken): o200k's
// word rules with Han characters taken out of the letter classes and given
// an alternative of their own, in front.
const kimiPattern = `[\p{Han}]+` +
	`|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?` +
	`|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?` +
	`|\p{N}{1,3}` +
	`| ?[^\s\p{L}\p{N}]+[\r\n]*` +
	`|\s*[\r\n]+` +
	`|\s+(?!\S)` +
	`|\s+`

// Character classes of the Kimi pattern, as bit flags. kUpper and kLower
// are the two bracketed letter sets; Lm, Lo and marks belong to both.
const (
	kHan   = 1 << iota // Script=Han (ideographs, but also radicals and 〇)
	kUpper             // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]
	kLower             // [\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]
	kL                 // \p{L}
	kN                 // \p{N}
	kSpace             // \s: Unicode White_Space, as in Rust's regex
	kCRLF              // \r or \n
)

var (
	kimiBMP     *[0x10000]uint8
	kimiBMPOnce sync.Once
)

// kimiClassSlow computes the class bits of a code point from the Unicode
// tables; the BMP table caches it.
func kimiClassSlow(r rune) uint8 {
	var c uint8
	han := unicode.Is(unicode.Han, r)
	if han {
		c |= kHan
	}
	if unicode.IsLetter(r) {
		c |= kL
	}
	if !han {
		if unicode.In(r, unicode.Lu, unicode.Lt, unicode.Lm, unicode.Lo, unicode.M) {
			c |= kUpper
		}
		if unicode.In(r, unicode.Ll, unicode.Lm, unicode.Lo, unicode.M) {
			c |= kLower
		}
	}
	if unicode.IsNumber(r) {
		c |= kN
	}
	if unicode.Is(unicode.White_Space, r) {
		c |= kSpace
	}
	if r == '\r' || r == '\n' {
		c |= kCRLF
	}
	return c
}

func buildKimiBMP() {
	t := new([0x10000]uint8)
	for r := range rune(0x10000) {
		t[r] = kimiClassSlow(r)
	}
	kimiBMP = t
}

// kimiAt returns the rune size and class at s[i]. Invalid UTF-8 bytes come
// back one at a time as U+FFFD, a symbol, so they stay in the text.
func kimiAt(s string, i int) (int, uint8) {
	if c := s[i]; c < 0x80 {
		return 1, kimiBMP[c]
	}
	r, n, _ := decodeAt(s, i)
	if r < 0x10000 {
		return n, kimiBMP[r]
	}
	return n, kimiClassSlow(r)
}

// kimiWord implements kimiPattern. tiktoken runs it with fancy-regex
// (leftmost-first alternation, backtracking); matchAt retraces the path
// that engine takes through the alternatives. Every character matches one
// of them, so no text falls between words.
type kimiWord struct{}

func newKimiWord() kimiWord {
	kimiBMPOnce.Do(buildKimiBMP)
	bmpClassOnce.Do(buildClassTable) // decodeAt and contraction use it
	return kimiWord{}
}

// kimiRun returns the end of the run of characters from s[i] whose class
// intersects set.
func kimiRun(s string, i int, set uint8) int {
	for i < len(s) {
		n, c := kimiAt(s, i)
		if c&set == 0 {
			break
		}
		i += n
	}
	return i
}

// withContraction extends a word ending at e by `(?i:'s|'t|'re|'ve|'m|'ll|'d)?`.
func withContraction(s string, e int) int {
	if e < len(s) && s[e] == '\'' {
		return e + contraction(s, e)
	}
	return e
}

// lowerEnding is `[upper]*[lower]+` at s[p]: the upper run is greedy, and
// when no lower character follows it, it gives characters back until the
// last one that is also lower (Lm, Lo, marks) can stand as the lower run.
func lowerEnding(s string, p int) (int, bool) {
	u, lastLower := p, -1
	for u < len(s) {
		n, c := kimiAt(s, u)
		if c&kUpper == 0 {
			break
		}
		u += n
		if c&kLower != 0 {
			lastLower = u
		}
	}
	if u < len(s) {
		if _, c := kimiAt(s, u); c&kLower != 0 {
			return kimiRun(s, u, kLower), true
		}
	}
	if lastLower > 0 {
		return lastLower, true
	}
	return 0, false
}

// upperStart is `[upper]+[lower]*` at s[p].
func upperStart(s string, p int) (int, bool) {
	u := kimiRun(s, p, kUpper)
	if u == p {
		return 0, false
	}
	return kimiRun(s, u, kLower), true
}

func (kimiWord) matchAt(s string, i int) int {
	n0, c0 := kimiAt(s, i)
	j := i + n0

	// [\p{Han}]+
	if c0&kHan != 0 {
		return kimiRun(s, j, kHan)
	}

	// The two letter alternatives, each with its optional leading
	// [^\r\n\p{L}\p{N}] tried first, then without it.
	lead := c0&(kCRLF|kL|kN) == 0 && j < len(s)
	for _, word := range [...]func(string, int) (int, bool){lowerEnding, upperStart} {
		if lead {
			if e, ok := word(s, j); ok {
				return withContraction(s, e)
			}
		}
		if e, ok := word(s, i); ok {
			return withContraction(s, e)
		}
	}

	// \p{N}{1,3}
	if c0&kN != 0 {
		e := j
		for k := 1; k < 3 && e < len(s); k++ {
			n, c := kimiAt(s, e)
			if c&kN == 0 {
				break
			}
			e += n
		}
		return e
	}

	// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
	const notPunct = kSpace | kL | kN
	start := -1
	if s[i] == ' ' && j < len(s) {
		if n1, c1 := kimiAt(s, j); c1&notPunct == 0 {
			start = j + n1
		}
	}
	if start < 0 && c0&notPunct == 0 {
		start = j
	}
	if start >= 0 {
		e := start
		for e < len(s) {
			n, c := kimiAt(s, e)
			if c&notPunct != 0 {
				break
			}
			e += n
		}
		for e < len(s) && (s[e] == '\r' || s[e] == '\n') {
			e++
		}
		return e
	}

	// \s*[\r\n]+|\s+(?!\S)|\s+ : White_Space is the same set in both tables.
	_, _, cq := decodeAt(s, i)
	return spaceWord(s, i, j, cq)
}
