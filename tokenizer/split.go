package tokenizer

// pattern is one Split pre-tokenizer regex, implemented by hand (Go's
// regexp lacks the look-ahead of `\s+(?!\S)`). matchAt returns the end of
// the match that a backtracking engine (Oniguruma, which tokenizers uses)
// finds starting at s[i] with its leftmost-first alternation, or i when no
// match starts there.
type pattern interface {
	matchAt(s string, i int) int
}

// pretokenizer is a Sequence of Split pre-tokenizers (behavior Isolated):
// each stage cuts every piece the stage before produced into its matches and
// the text between them, running its regex on that piece alone (a
// look-ahead does not see past the piece).
type pretokenizer struct {
	stages []pattern
}

// appendWords appends the [start, end) offsets of the words of s to dst.
func (p pretokenizer) appendWords(dst [][2]int, s string) [][2]int {
	if len(p.stages) == 1 {
		// Qwen's single regex matches at every character: no gaps, no
		// recursion, and no interface call per word on the hot path.
		if sp, ok := p.stages[0].(splitter); ok {
			return sp.appendWords(dst, s)
		}
	}
	return p.cut(dst, s, 0, len(s), 0)
}

func (p pretokenizer) cut(dst [][2]int, s string, a, b, stage int) [][2]int {
	if stage == len(p.stages) {
		return append(dst, [2]int{a, b})
	}
	pat, piece := p.stages[stage], s[a:b]
	gap := 0 // start of the text not matched yet
	for i := 0; i < len(piece); {
		e := pat.matchAt(piece, i)
		if e == i {
			_, n, _ := decodeAt(piece, i)
			i += n
			continue
		}
		if gap < i {
			dst = p.cut(dst, s, a+gap, a+i, stage+1)
		}
		dst = p.cut(dst, s, a+i, a+e, stage+1)
		i, gap = e, e
	}
	if gap < len(piece) {
		dst = p.cut(dst, s, a+gap, b, stage+1)
	}
	return dst
}

// matchAt: every character starts a Qwen word.
func (sp splitter) matchAt(s string, i int) int { return sp.next(s, i) }

// newPattern returns the implementation of a Split regex, or false.
func newPattern(regex string) (pattern, bool) {
	bmpClassOnce.Do(buildClassTable)
	if sp, ok := newSplitter(regex); ok {
		return sp, true
	}
	switch regex {
	case deepseekDigits:
		return digitGroups{}, true
	case deepseekCJK:
		return cjkRun{}, true
	case deepseekWords:
		return deepseekWord{}, true
	}
	return nil, false
}

// DeepSeek-V3's three Split stages (tokenizer.json of DeepSeek-V3, R1, V3.1).
const (
	deepseekDigits = `\p{N}{1,3}`
	deepseekCJK    = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"
	deepseekWords  = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"
)

// digitGroups is `\p{N}{1,3}`.
type digitGroups struct{}

func (digitGroups) matchAt(s string, i int) int {
	e := i
	for k := 0; k < 3 && e < len(s); k++ {
		_, n, c := decodeAt(s, e)
		if c&clsN == 0 {
			break
		}
		e += n
	}
	return e
}

// cjkRun is `[一-龥぀-ゟ゠-ヿ]+`: CJK ideographs U+4E00–U+9FA5, hiragana
// and katakana.
type cjkRun struct{}

func (cjkRun) matchAt(s string, i int) int {
	e := i
	for e < len(s) {
		r, n, _ := decodeAt(s, e)
		if !(r >= 0x4e00 && r <= 0x9fa5 || r >= 0x3040 && r <= 0x30ff) {
			break
		}
		e += n
	}
	return e
}

// deepseekWord is DeepSeek-V3's word regex:
//
//	[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+      ASCII punctuation + ASCII letters
//	|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+                 a word with one optional leading character
//	| ?[\p{P}\p{S}]+[\r\n]*                               punctuation and symbols
//	|\s*[\r\n]+|\s+(?!\S)|\s+                             whitespace, as in Qwen's
//
// Digits and other characters no alternative takes (controls, format
// characters) stay between the matches.
type deepseekWord struct{}

func isASCIIPunct(c byte) bool {
	return c >= '!' && c <= '/' || c >= ':' && c <= '@' || c >= '[' && c <= '`' || c >= '{' && c <= '~'
}

func isASCIILetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func (deepseekWord) matchAt(s string, i int) int {
	if isASCIIPunct(s[i]) && i+1 < len(s) && isASCIILetter(s[i+1]) {
		e := i + 1
		for e < len(s) && isASCIILetter(s[e]) {
			e++
		}
		return e
	}
	_, n0, c0 := decodeAt(s, i)
	j := i + n0
	const word = clsL | clsM
	if j < len(s) && c0&(clsCRLF|clsL|clsP|clsS) == 0 {
		if _, n1, c1 := decodeAt(s, j); c1&word != 0 {
			return runOf(s, j+n1, word)
		}
	}
	if c0&word != 0 {
		return runOf(s, j, word)
	}
	const punct = clsP | clsS
	start := -1
	if s[i] == ' ' && j < len(s) {
		if _, n1, c1 := decodeAt(s, j); c1&punct != 0 {
			start = j + n1
		}
	}
	if start < 0 && c0&punct != 0 {
		start = j
	}
	if start >= 0 {
		e := runOf(s, start, punct)
		for e < len(s) && (s[e] == '\r' || s[e] == '\n') {
			e++
		}
		return e
	}
	return spaceWord(s, i, j, c0)
}

// runOf returns the end of the run of characters from s[i] whose class
// intersects set.
func runOf(s string, i int, set uint8) int {
	for i < len(s) {
		_, n, c := decodeAt(s, i)
		if c&set == 0 {
			break
		}
		i += n
	}
	return i
}
