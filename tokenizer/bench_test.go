package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkLoadQwen3 measures Load of the real 151k-vocab tokenizer.json
// (decompressed to a temporary file, so file reading is included).
func BenchmarkLoadQwen3(b *testing.B) {
	data, err := qwen3JSON()
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Load(path); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/load")
}

// benchText mixes English prose, code, CJK, accents, emoji, numbers and chat
// markup, repeated to about 64 KiB.
var benchText = func() string {
	unit := "The quick brown fox jumps over the lazy dog; it's 3.14159 and 42 apples.\n" +
		"func main() {\n\tfmt.Println(\"hello, world\") // greet\n}\n" +
		"日本語のテキストです。中文分词测试，标点符号！한국어 텍스트\n" +
		"Ünïcödé àccents café naïve — emoji 😀🎉👍🏽 family 👨\u200d👩\u200d👧\n" +
		"<|im_start|>user\nWhat's the weather in Paris?<|im_end|>\n<think>\n\n</think>\n\n" +
		"    indented   spaces\r\n\r\n"
	return strings.Repeat(unit, 65536/len(unit)+1)
}()

func BenchmarkEncode(b *testing.B) {
	tok := loadQwen3(b)
	b.SetBytes(int64(len(benchText)))
	b.ReportAllocs()
	for b.Loop() {
		tok.Encode(benchText)
	}
}

// BenchmarkEncodeUncached measures BPE itself: every word is new to the
// cache because the cache is reset before each iteration.
func BenchmarkEncodeUncached(b *testing.B) {
	tok := loadQwen3(b)
	b.SetBytes(int64(len(benchText)))
	b.ReportAllocs()
	for b.Loop() {
		tok.model.cache.reset()
		tok.Encode(benchText)
	}
}

func BenchmarkDecode(b *testing.B) {
	tok := loadQwen3(b)
	ids := tok.Encode(benchText)
	b.SetBytes(int64(len(benchText)))
	b.ReportAllocs()
	for b.Loop() {
		tok.Decode(ids)
	}
}
