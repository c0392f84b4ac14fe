package tokenizer

import (
	"slices"
	"sync"
	"testing"
)

func TestGoldenTiny(t *testing.T) {
	checkGolden(t, loadTiny(t), readGolden(t, tinyGoldenPath))
}

func TestGoldenQwen3(t *testing.T) {
	checkGolden(t, loadQwen3(t), readGolden(t, qwen3GoldenPath))
}

// checkGolden requires every case to match: ids, token strings and decoded
// text.
func checkGolden(t *testing.T, tok *Tokenizer, g goldenFile) {
	pass := 0
	for i, c := range g.Cases {
		ok := true
		got := tok.Encode(c.Text)
		if !slices.Equal(got, c.IDs) {
			ok = false
			t.Errorf("case %d %q:\n got ids %v\nwant ids %v", i, c.Text, got, c.IDs)
		}
		var toks []string
		for _, id := range c.IDs {
			toks = append(toks, tok.TokenString(id))
		}
		if len(c.Tokens) > 0 && !slices.Equal(toks, c.Tokens) {
			ok = false
			t.Errorf("case %d %q: tokens %q, want %q", i, c.Text, toks, c.Tokens)
		}
		if dec := tok.Decode(c.IDs); dec != c.Decoded {
			ok = false
			t.Errorf("case %d %q: decoded %q, want %q", i, c.Text, dec, c.Decoded)
		}
		if ok {
			pass++
		}
	}
	t.Logf("%s (%s): %d/%d cases pass", g.Tokenizer, g.Reference, pass, len(g.Cases))
}

// TestConcurrentEncode shares one Tokenizer (and its word cache) between
// goroutines; run with -race to check the cache.
func TestConcurrentEncode(t *testing.T) {
	tok := loadQwen3(t)
	g := readGolden(t, qwen3GoldenPath)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range g.Cases {
				c := g.Cases[(i+w*37)%len(g.Cases)]
				if got := tok.Encode(c.Text); !slices.Equal(got, c.IDs) {
					t.Errorf("goroutine %d: Encode(%q) = %v, want %v", w, c.Text, got, c.IDs)
				}
			}
		})
	}
	wg.Wait()
}
