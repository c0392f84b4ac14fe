package tokenizer

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// rawAddedTokens lists the added tokens of a tokenizer.json that match
// before normalisation, read straight from the file.
func rawAddedTokens(t testing.TB, data []byte) []string {
	var f struct {
		AddedTokens []struct {
			Content    string `json:"content"`
			Normalized bool   `json:"normalized"`
		} `json:"added_tokens"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range f.AddedTokens {
		if !a.Normalized {
			out = append(out, a.Content)
		}
	}
	return out
}

// expectedRoundTrip is what decode(encode(s)) must give: s with NFC applied
// to each stretch between raw added tokens (leftmost-longest), since
// tokenizers normalises those stretches one by one.
func expectedRoundTrip(s string, raw []string) string {
	var out, seg strings.Builder
	for i := 0; i < len(s); {
		best := ""
		for _, c := range raw {
			if len(c) > len(best) && strings.HasPrefix(s[i:], c) {
				best = c
			}
		}
		if best == "" {
			seg.WriteByte(s[i])
			i++
			continue
		}
		out.WriteString(norm.NFC.String(seg.String()))
		seg.Reset()
		out.WriteString(best)
		i += len(best)
	}
	out.WriteString(norm.NFC.String(seg.String()))
	return out.String()
}

func FuzzEncodeDecode(f *testing.F) {
	for _, path := range []string{tinyGoldenPath, qwen3GoldenPath, kimiGoldenPath} {
		for _, c := range readGolden(f, path).Cases {
			if len(c.Text) < 4096 {
				f.Add(c.Text)
			}
		}
	}
	f.Add("\xff\xfe<|im_end|>\xe6\x97")
	tinyData, err := os.ReadFile(tinyPath)
	if err != nil {
		f.Fatal(err)
	}
	qwenData, err := qwen3JSON()
	if err != nil {
		f.Fatal(err)
	}
	toks := []struct {
		name string
		tok  *Tokenizer
		raw  []string
		nfc  bool // the tokenizer NFC-normalises
	}{
		{"tiny", loadTiny(f), rawAddedTokens(f, tinyData), true},
		{"qwen3", loadQwen3(f), rawAddedTokens(f, qwenData), true},
		{"kimi", loadKimi(f), nil, false},
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, tk := range toks {
			ids := tk.tok.Encode(s)
			got := tk.tok.Decode(ids)
			d := tk.tok.NewDecoder()
			var streamed strings.Builder
			for _, id := range ids {
				if id < 0 || id >= tk.tok.VocabSize() {
					t.Fatalf("%s: id %d out of range", tk.name, id)
				}
				streamed.WriteString(d.Add(id))
			}
			streamed.WriteString(d.Flush())
			if streamed.String() != got {
				t.Errorf("%s: streamed %q, Decode %q", tk.name, streamed.String(), got)
			}
			if !utf8.ValidString(s) {
				if !utf8.ValidString(got) {
					t.Errorf("%s: Decode returned invalid UTF-8 %q", tk.name, got)
				}
				continue
			}
			want := s
			if tk.nfc {
				want = expectedRoundTrip(s, tk.raw)
			}
			if got != want {
				t.Errorf("%s: decode(encode(%q)) = %q, want %q", tk.name, s, got, want)
			}
		}
	})
}

// FuzzParse feeds mutated small tokenizer.json files to Parse, which must
// return an error or a working Tokenizer, never panic.
func FuzzParse(f *testing.F) {
	f.Add(`{"model": {"type": "BPE", "ignore_merges": true, "unk_token": "<unk>", "fuse_unk": true,
		"vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4, "\u0120": 5, "<unk>": 6}, "merges": ["a b", ["ab", "c"]]},
		"added_tokens": [{"id": 7, "content": "<x>", "lstrip": true, "rstrip": true, "single_word": true, "normalized": true, "special": true}],
		"normalizer": {"type": "NFC"}, "pre_tokenizer": ` + qwenPreTokenizer + `, "decoder": {"type": "ByteLevel"}}`)
	f.Fuzz(func(t *testing.T, data string) {
		tok, err := Parse([]byte(data))
		if err != nil {
			return
		}
		ids := tok.Encode("abc <x> ab\u0301c")
		tok.Decode(ids)
		for id := -1; id <= tok.VocabSize(); id++ {
			tok.TokenString(id)
			tok.IsSpecial(id)
		}
	})
}
