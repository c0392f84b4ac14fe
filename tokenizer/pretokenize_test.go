package tokenizer

import (
	"slices"
	"testing"
	"unicode"
)

// The expected splits below were produced by a backtracking regex engine
// (Python's regex module) running the two patterns verbatim.
func TestSplitWords(t *testing.T) {
	q3, ok3 := newSplitter(qwen3Pattern)
	q35, ok35 := newSplitter(qwen35Pattern)
	if !ok3 || !ok35 {
		t.Fatal("known patterns not recognised")
	}
	cases := []struct {
		name, text string
		qwen3      []string
		qwen35     []string // nil: same as qwen3
	}{
		{"space run before word keeps one space for the word", "hello   world", []string{"hello", "  ", " world"}, nil},
		{`\s+(?!\S) takes a trailing run whole`, "a  ", []string{"a", "  "}, nil},
		{"single space at end", " ", []string{" "}, nil},
		{"only spaces", "  ", []string{"  "}, nil},
		{"mixed blanks before word", "a \t b", []string{"a", " \t", " b"}, nil},
		{"tab joins the word", "\t\tfoo", []string{"\t", "\tfoo"}, nil},
		{"space before punctuation", "x  !!", []string{"x", " ", " !!"}, nil},
		{"CRLF", "x\r\ny", []string{"x", "\r\n", "y"}, nil},
		{"spaces around CRLF", "x \r\n y", []string{"x", " \r\n", " y"}, nil},
		{"blank lines end at last newline", "   \n  \n", []string{"   \n  \n"}, nil},
		{"newline run then space word", "x \n\n y", []string{"x", " \n\n", " y"}, nil},
		{"space newline at end", "a \n", []string{"a", " \n"}, nil},
		{"punctuation swallows line breaks", "foo.\r\n\r\nbar", []string{"foo", ".\r\n\r\n", "bar"}, nil},
		{"contractions are case-insensitive", "I'M HE'S we'Ve 'LL 'd", []string{"I", "'M", " HE", "'S", " we", "'Ve", " '", "LL", " '", "d"}, nil},
		{"contraction inside word", "don't", []string{"don", "'t"}, nil},
		{"long s folds to s", "'\u017f", []string{"'\u017f"}, nil},
		{"apostrophe prefixes a word", "'x", []string{"'x"}, nil},
		{"combining mark after letter", "e\u0301", []string{"e", "\u0301"}, []string{"e\u0301"}},
		{"combining mark after space", " \u0301abc", []string{" \u0301", "abc"}, []string{" \u0301abc"}},
		{"lone marks before punctuation", "\u0301\u0301!", []string{"\u0301\u0301!"}, []string{"\u0301\u0301", "!"}},
		{"emoji are symbols", "hi 😀😀 there", []string{"hi", " 😀😀", " there"}, nil},
		{"digits one by one", "$100.00", []string{"$", "1", "0", "0", ".", "0", "0"}, nil},
		{"NBSP prefixes a word", "\u00a0x", []string{"\u00a0x"}, nil},
		{"ideographic spaces", "a\u3000\u3000b", []string{"a", "\u3000", "\u3000b"}, nil},
		{"line separator is a space", "a\u2028b", []string{"a", "\u2028b"}, nil},
		{"zero-width space is not a space", "\u200b", []string{"\u200b"}, nil},
		{"CJK run", "日本語 text", []string{"日本語", " text"}, nil},
		{"invalid UTF-8 stays in the text", "a\xffb\xe6", []string{"a", "\xffb", "\xe6"}, nil},
	}
	for _, c := range cases {
		for _, v := range []struct {
			name string
			sp   splitter
			want []string
		}{{"qwen3", q3, c.qwen3}, {"qwen3.5", q35, c.qwen35}} {
			if v.want == nil {
				v.want = c.qwen3
			}
			var got []string
			for _, w := range v.sp.appendWords(nil, c.text) {
				got = append(got, c.text[w[0]:w[1]])
			}
			if !slices.Equal(got, v.want) {
				t.Errorf("%s: %s: split(%q) = %q, want %q", v.name, c.name, c.text, got, v.want)
			}
		}
	}
}

func TestUnknownPattern(t *testing.T) {
	if _, ok := newSplitter(`\s+|\S+`); ok {
		t.Error("an unknown pattern was accepted")
	}
}

// TestClassTable checks the cached BMP classes against the unicode package.
func TestClassTable(t *testing.T) {
	newSplitter(qwen3Pattern) // builds the table
	for r := rune(0); r < 0x10000; r++ {
		want := classOfSlow(r)
		if r == '\r' || r == '\n' {
			want |= clsCRLF
		}
		if unicode.IsSpace(r) != (want&clsSpace != 0) {
			t.Fatalf("U+%04X: IsSpace disagrees with White_Space", r)
		}
		if got := bmpClass[r]; got != want {
			t.Fatalf("U+%04X: class %b, want %b", r, got, want)
		}
	}
}
