package tokenizer

import (
	"sync"
	"unicode"
	"unicode/utf8"
)

// The Split pre-tokenizer regexes this package implements (Kimi-K2's is in
// kimi.go). tokenizers runs
// them with Oniguruma (leftmost-first alternation, backtracking); Go's regexp
// has no look-ahead for `\s+(?!\S)`, so splitWords reproduces the alternation
// by hand instead of compiling the pattern.
const (
	// qwen3Pattern is used by Qwen2.5 and Qwen3 tokenizers.
	qwen3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// qwen35Pattern (Qwen3.5) also keeps combining marks (\p{M}) inside words
	// instead of treating them as punctuation.
	qwen35Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// gpt4Pattern is Qwen3's with digits in groups of up to three: OpenAI's
	// cl100k pattern, in the tokenizer.json of Llama 3 and of the GLM-4
	// family (GLM-4.5 to 4.7, as llama.cpp's chatglm4 pre-tokenizer has it).
	gpt4Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// Character classes the patterns use, as bit flags.
const (
	clsL     = 1 << iota // \p{L}
	clsN                 // \p{N}
	clsM                 // \p{M}
	clsSpace             // \s: Unicode White_Space, as in Oniguruma
	clsCRLF              // \r or \n
	clsP                 // \p{P}
	clsS                 // \p{S}
)

// bmpClass caches the class of every Basic Multilingual Plane code point:
// unicode.IsLetter and friends binary-search range tables, which made
// classifying characters the largest cost of pre-tokenizing non-ASCII text.
// It is built on first use from the same range tables (64 KiB, well under a
// millisecond).
var (
	bmpClass     *[0x10000]uint8
	bmpClassOnce sync.Once
)

func buildClassTable() {
	t := new([0x10000]uint8)
	mark := func(tab *unicode.RangeTable, c uint8) {
		for _, r := range tab.R16 {
			for x := int(r.Lo); x <= int(r.Hi); x += int(r.Stride) {
				t[x] = c
			}
		}
	}
	// The categories are disjoint, so each code point gets one class.
	mark(unicode.L, clsL)
	mark(unicode.N, clsN)
	mark(unicode.M, clsM)
	mark(unicode.P, clsP)
	mark(unicode.S, clsS)
	mark(unicode.White_Space, clsSpace)
	t['\r'] |= clsCRLF
	t['\n'] |= clsCRLF
	bmpClass = t
}

// classOfSlow classifies code points outside the BMP table.
func classOfSlow(r rune) uint8 {
	switch {
	case unicode.IsLetter(r):
		return clsL
	case unicode.IsNumber(r):
		return clsN
	case unicode.IsMark(r):
		return clsM
	case unicode.IsPunct(r):
		return clsP
	case unicode.IsSymbol(r):
		return clsS
	case unicode.IsSpace(r):
		return clsSpace // no White_Space code point is outside the BMP
	}
	return 0
}

// splitter cuts normalised text into pre-tokenizer words.
type splitter struct {
	// letter is the class set of `[\p{L}\p{M}]+` (Qwen3.5) or `\p{L}+` (Qwen3);
	// punct is the complement set of `[^\s\p{L}\p{M}\p{N}]` or `[^\s\p{L}\p{N}]`.
	letter, punct uint8
	// digits is how many \p{N} one word takes at most: 1, or 3 in gpt4Pattern.
	digits int
}

func newSplitter(pattern string) (splitter, bool) {
	bmpClassOnce.Do(buildClassTable)
	switch pattern {
	case qwen3Pattern:
		return splitter{letter: clsL, punct: clsSpace | clsL | clsN, digits: 1}, true
	case qwen35Pattern:
		return splitter{letter: clsL | clsM, punct: clsSpace | clsL | clsM | clsN, digits: 1}, true
	case gpt4Pattern:
		return splitter{letter: clsL, punct: clsSpace | clsL | clsN, digits: 3}, true
	}
	return splitter{}, false
}

// decodeAt returns the rune at s[i], its size and class. Invalid UTF-8 bytes
// come back one at a time as U+FFFD, which is a symbol (class 0), so they stay
// in the text and BPE encodes them as raw bytes.
func decodeAt(s string, i int) (rune, int, uint8) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1, bmpClass[c]
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	if r < 0x10000 {
		return r, n, bmpClass[r]
	}
	return r, n, classOfSlow(r)
}

// isFoldOf reports whether r matches the ASCII lower-case letter l under
// Unicode simple case folding, as Oniguruma's (?i) does. Only 's' has a
// non-ASCII fold among the contraction letters: U+017F LATIN SMALL LETTER LONG S.
func isFoldOf(r rune, l byte) bool {
	return r == rune(l) || r == rune(l-'a'+'A') || (l == 's' && r == 0x17F)
}

// contraction returns the length of `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at s[i:]
// (s[i] == '\”), or 0.
func contraction(s string, i int) int {
	j := i + 1
	if j >= len(s) {
		return 0
	}
	r1, n1, _ := decodeAt(s, j)
	for _, l := range [...]byte{'s', 't', 'm', 'd'} {
		if isFoldOf(r1, l) {
			return 1 + n1
		}
	}
	k := j + n1
	if k >= len(s) {
		return 0
	}
	r2, n2, _ := decodeAt(s, k)
	for _, p := range [...][2]byte{{'r', 'e'}, {'v', 'e'}, {'l', 'l'}} {
		if isFoldOf(r1, p[0]) && isFoldOf(r2, p[1]) {
			return 1 + n1 + n2
		}
	}
	return 0
}

// next returns the end of the word starting at s[i], trying the pattern's
// alternatives in order exactly as a backtracking engine would. Every
// character matches some alternative, so the match always starts at i.
func (sp splitter) next(s string, i int) int {
	r0, n0, c0 := decodeAt(s, i)
	j := i + n0

	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if r0 == '\'' {
		if n := contraction(s, i); n > 0 {
			return i + n
		}
	}

	// [^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+ : the optional character is tried first;
	// when no letter follows it, backtracking retries with the run at i.
	if j < len(s) && c0&(clsCRLF|clsL|clsN) == 0 {
		if _, n1, c1 := decodeAt(s, j); c1&sp.letter != 0 {
			return sp.run(s, j+n1, sp.letter, true)
		}
	}
	if c0&sp.letter != 0 {
		return sp.run(s, j, sp.letter, true)
	}

	// \p{N} or \p{N}{1,3}
	if c0&clsN != 0 {
		for k := 1; k < sp.digits && j < len(s); k++ {
			_, n, c := decodeAt(s, j)
			if c&clsN == 0 {
				break
			}
			j += n
		}
		return j
	}

	// ` ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*`
	start := -1
	if r0 == ' ' && j < len(s) {
		if _, n1, c1 := decodeAt(s, j); c1&sp.punct == 0 {
			start = j + n1
		}
	}
	if start < 0 && c0&sp.punct == 0 {
		start = j
	}
	if start >= 0 {
		e := sp.run(s, start, sp.punct, false)
		for e < len(s) && (s[e] == '\r' || s[e] == '\n') {
			e++
		}
		return e
	}

	return spaceWord(s, i, j, c0)
}

// spaceWord is the end of `\s*[\r\n]+|\s+(?!\S)|\s+` matched at s[i], whose
// first character (class c0) ends at j; i when that is not a space.
func spaceWord(s string, i, j int, c0 uint8) int {
	if c0&clsSpace == 0 {
		return i
	}
	// Find the maximal \s run [i, e), the start of its last character and
	// the end of its last \r or \n.
	e, last, nl := j, i, -1
	if c0&clsCRLF != 0 {
		nl = j
	}
	for e < len(s) {
		_, n, c := decodeAt(s, e)
		if c&clsSpace == 0 {
			break
		}
		last = e
		e += n
		if c&clsCRLF != 0 {
			nl = e
		}
	}
	switch {
	case nl >= 0:
		// \s*[\r\n]+ : \s* backtracks until [\r\n]+ can match, so the word
		// ends right after the run's last line break.
		return nl
	case e == len(s):
		// \s+(?!\S) at the end of the text takes the whole run.
		return e
	case last > i:
		// \s+(?!\S) gives back the last space so the next word can start
		// with it (" word").
		return last
	default:
		// \s+ : a single space before a non-space.
		return e
	}
}

// run returns the end of the run of characters starting at s[i] whose class
// intersects set (in == true) or avoids it (in == false).
func (sp splitter) run(s string, i int, set uint8, in bool) int {
	for i < len(s) {
		_, n, c := decodeAt(s, i)
		if (c&set != 0) != in {
			break
		}
		i += n
	}
	return i
}

// appendWords appends the [start, end) offsets of the words of s to dst.
func (sp splitter) appendWords(dst [][2]int, s string) [][2]int {
	for i := 0; i < len(s); {
		e := sp.next(s, i)
		dst = append(dst, [2]int{i, e})
		i = e
	}
	return dst
}
