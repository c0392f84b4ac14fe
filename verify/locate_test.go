package verify

import (
	"math/rand/v2"
	"testing"

	"github.com/fmoe/fmoe/format"
)

func TestUnstepInvertsTheZeroByteStep(t *testing.T) {
	seen := map[byte]bool{}
	for i := range 256 {
		seen[byte(crcTable[i]>>24)] = true
	}
	if len(seen) != 256 {
		t.Fatalf("CRC table top bytes are not a permutation (%d distinct)", len(seen))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		s := rng.Uint32()
		if got := unstep(crcTable[byte(s)] ^ s>>8); got != s {
			t.Fatalf("unstep(step(%08x)) = %08x", s, got)
		}
	}
}

// Any single damaged byte, at any offset and with any value, is among the candidates.
func TestLocateByteError(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 36864)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	want := format.CRC32C(buf)
	for trial := range 200 {
		off := rng.IntN(len(buf))
		if trial < 2 {
			off = []int{0, len(buf) - 1}[trial]
		}
		x := byte(rng.IntN(255) + 1)
		buf[off] ^= x
		cands := locateByteError(want, format.CRC32C(buf), int64(len(buf)), 8)
		buf[off] ^= x
		found := false
		for _, c := range cands {
			found = found || c.Offset == int64(off) && c.XOR == x
		}
		if !found {
			t.Fatalf("byte %d ^ %02x: candidates %v", off, x, cands)
		}
	}
	if c := locateByteError(want, want, int64(len(buf)), 8); c != nil {
		t.Fatalf("no damage, candidates %v", c)
	}
}
