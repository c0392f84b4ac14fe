package tokenizer

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// Expected values follow the Unicode "maximal subpart" replacement that Rust's
// from_utf8_lossy (and Python's errors="replace") implement.
func TestAppendLossy(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a\xe6\x97\xa5b", "a日b"},
		{"\xe6\x97", "\uFFFD"},
		{"\xff\xfe", "\uFFFD\uFFFD"},
		{"\xf0\x9f\x98a", "\uFFFDa"},
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"}, // UTF-16 surrogate
		{"\xc0\x80", "\uFFFD\uFFFD"},           // overlong
		{"\xe0\x80", "\uFFFD\uFFFD"},
		{"\xf4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD"}, // above U+10FFFF
		{"\xf0\x9f\x98\x80\x80", "😀\uFFFD"},
	}
	for _, c := range cases {
		if got := string(appendLossy(nil, []byte(c.in))); got != c.want {
			t.Errorf("lossy(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// byteIDs returns the ids of the single-byte tokens spelling s.
func byteIDs(t *testing.T, tok *Tokenizer, s string) []int {
	t.Helper()
	var ids []int
	for i := 0; i < len(s); i++ {
		id, ok := tok.TokenID(byteToUTF8[s[i]])
		if !ok {
			t.Fatalf("no token for byte %#x", s[i])
		}
		ids = append(ids, id)
	}
	return ids
}

func TestDecoderHoldsPartialCharacters(t *testing.T) {
	tok := loadQwen3(t)
	d := tok.NewDecoder()
	ids := byteIDs(t, tok, "a😀")
	want := []string{"a", "", "", "", "😀"}
	for i, id := range ids {
		if got := d.Add(id); got != want[i] {
			t.Errorf("Add(byte %d) = %q, want %q", i, got, want[i])
		}
	}
	if got := d.Flush(); got != "" {
		t.Errorf("Flush = %q, want empty", got)
	}

	// A sequence that turns out invalid is replaced as soon as that is
	// known, exactly as Decode would.
	ids = byteIDs(t, tok, "\xe6\x97x")
	got := []string{d.Add(ids[0]), d.Add(ids[1]), d.Add(ids[2])}
	if want := []string{"", "", "\uFFFDx"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("invalid sequence: got %q, want %q", got, want)
	}

	// Flush gives up on an unfinished character.
	d.Add(byteIDs(t, tok, "\xf0")[0])
	if got := d.Flush(); got != "\uFFFD" {
		t.Errorf("Flush of unfinished character = %q, want U+FFFD", got)
	}
	if got := d.Flush(); got != "" {
		t.Errorf("second Flush = %q, want empty", got)
	}
}

func TestDecoderMatchesDecode(t *testing.T) {
	tok := loadQwen3(t)
	text := "日本語のテキスト 😀🎉👍🏽 家族 👨\u200d👩\u200d👧 café<|im_end|>한국어"
	ids := tok.Encode(text)
	d := tok.NewDecoder()
	var b strings.Builder
	for _, id := range ids {
		piece := d.Add(id)
		if !utf8.ValidString(piece) {
			t.Fatalf("Add returned invalid UTF-8 %q", piece)
		}
		b.WriteString(piece)
	}
	b.WriteString(d.Flush())
	if b.String() != text || tok.Decode(ids) != text {
		t.Errorf("streamed %q, Decode %q, want %q", b.String(), tok.Decode(ids), text)
	}
	// Some ids must have ended mid-character for this test to mean anything.
	split := false
	for _, id := range ids {
		if !utf8.Valid(tok.appendBytes(nil, id)) {
			split = true
		}
	}
	if !split {
		t.Error("no token split a character; pick a harder text")
	}
}

func TestDecodeSkipsUnknownIDs(t *testing.T) {
	tok := loadQwen3(t)
	hi := tok.Encode("hi")
	ids := append([]int{-1, tok.VocabSize(), 1 << 40}, hi...)
	if got := tok.Decode(ids); got != "hi" {
		t.Errorf("Decode = %q, want %q", got, "hi")
	}
	if got := tok.TokenString(-5); got != "" {
		t.Errorf("TokenString(-5) = %q", got)
	}
}

// TestTokenBytes checks the inline decoding of byte-level strings against a
// plain rune loop over every vocabulary token and some non-alphabet ones.
func TestTokenBytes(t *testing.T) {
	tok := loadQwen3(t)
	slow := func(s string) []byte {
		var out []byte
		for _, r := range s {
			if r >= byteLevelLimit || runeToByte[r] < 0 {
				return []byte(s)
			}
			out = append(out, byte(runeToByte[r]))
		}
		return out
	}
	extra := []string{"<think>", "日本", "a b", "\xc4", "\xc4\x80\xc5", "Ā", "ō", "Ń", "é"}
	for _, s := range append(slices.Clone(tok.tokens), extra...) {
		if got, want := appendTokenBytes([]byte("x"), s), append([]byte("x"), slow(s)...); !bytes.Equal(got, want) {
			t.Fatalf("appendTokenBytes(%q) = %q, want %q", s, got, want)
		}
	}
}
