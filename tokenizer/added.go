package tokenizer

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedToken is an entry of tokenizer.json's added_tokens.
type addedToken struct {
	id      int32
	content string
	// The flags of tokenizers' AddedToken.
	singleWord, lstrip, rstrip, normalized, special bool
}

// matcher finds added tokens in text with the semantics of the
// Aho-Corasick automaton tokenizers builds (MatchKind::LeftmostLongest): the
// earliest match wins, the longest one among those starting there, and
// matching resumes after it. Checkpoints carry a few dozen added tokens, so
// a first-byte index over length-sorted patterns is as fast as an automaton.
type matcher struct {
	patterns []string
	tokens   []*addedToken
	byFirst  [256][]int32 // pattern indices, longest first
	// only is the first byte of every pattern when they all share one (all
	// Qwen added tokens start with '<'), letting find skip with IndexByte.
	only int
}

func newMatcher(tokens []*addedToken, patterns []string) *matcher {
	m := &matcher{patterns: patterns, tokens: tokens}
	order := make([]int, len(patterns))
	for i := range order {
		order[i] = i
	}
	// Stable, so among equal patterns the first listed wins, as in the
	// automaton.
	sort.SliceStable(order, func(a, b int) bool { return len(patterns[order[a]]) > len(patterns[order[b]]) })
	m.only = -1
	for _, i := range order {
		if p := patterns[i]; p != "" {
			m.byFirst[p[0]] = append(m.byFirst[p[0]], int32(i))
			if m.only == -1 {
				m.only = int(p[0])
			} else if m.only != int(p[0]) {
				m.only = -2
			}
		}
	}
	return m
}

// find returns the next match in s at or after from.
func (m *matcher) find(s string, from int) (start, end int, tok *addedToken, ok bool) {
	for i := from; i < len(s); i++ {
		if m.only >= 0 {
			j := strings.IndexByte(s[i:], byte(m.only))
			if j < 0 {
				break
			}
			i += j
		}
		for _, p := range m.byFirst[s[i]] {
			if strings.HasPrefix(s[i:], m.patterns[p]) {
				return i, i + len(m.patterns[p]), m.tokens[p], true
			}
		}
	}
	return 0, 0, nil, false
}

// piece is a span of text that is either an added token (tok != nil) or
// ordinary text still to be tokenized.
type piece struct {
	text string
	tok  *addedToken
}

// split cuts s into ordinary text and added tokens like tokenizers'
// AddedVocabulary::find_matches, appending to dst. Empty ordinary spans are
// dropped since they produce no tokens.
func (m *matcher) split(dst []piece, s string) []piece {
	last := 0 // end of the previous piece
	for from := 0; ; {
		start, end, tok, ok := m.find(s, from)
		if !ok {
			break
		}
		from = end
		if tok.singleWord {
			if (start > 0 && endsWithWord(s[:start])) || (end < len(s) && startsWithWord(s[end:])) {
				continue
			}
		}
		if tok.lstrip {
			// Never reach back into what the previous match consumed.
			start = max(len(strings.TrimRightFunc(s[:start], unicode.IsSpace)), last)
		}
		if tok.rstrip {
			end = len(s) - len(strings.TrimLeftFunc(s[end:], unicode.IsSpace))
		}
		if last < start {
			dst = append(dst, piece{text: s[last:start]})
		}
		// tokenizers emits the stripped whitespace as part of the token's
		// span, which then yields only the token's id.
		dst = append(dst, piece{text: s[start:end], tok: tok})
		last = end
	}
	if last < len(s) {
		dst = append(dst, piece{text: s[last:]})
	}
	return dst
}

// isWordChar is Rust regex's Unicode \w, which tokenizers uses to decide
// whether a single_word token touches a word: Alphabetic, marks, decimal
// digits, connector punctuation and the joiners.
func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.Is(unicode.Nd, r) ||
		unicode.Is(unicode.Pc, r) || unicode.Is(unicode.Nl, r) ||
		unicode.Is(unicode.Other_Alphabetic, r) || unicode.Is(unicode.Join_Control, r)
}

func endsWithWord(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return isWordChar(r)
}

func startsWithWord(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return isWordChar(r)
}
