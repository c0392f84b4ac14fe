package model

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/fmoe/fmoe/format"
)

// TestCRC32CCombine: combining the checksums of two parts gives the
// checksum of the whole, for parts of 0 to 70,000 bytes.
func TestCRC32CCombine(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 140_000)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	for _, n := range []int{0, 1, 2, 3, 7, 64, 1000, 65_536, 70_000} {
		for _, m := range []int{0, 1, 5, 4096, 70_000} {
			a, c := b[:n], b[n:n+m]
			want := format.CRC32C(b[:n+m])
			if got := crc32cCombine(format.CRC32C(a), format.CRC32C(c), int64(m)); got != want {
				t.Fatalf("parts of %d and %d bytes: combined %08x, whole %08x", n, m, got, want)
			}
		}
	}
}

// TestReadSplitCRC: the split read's bytes are the file's and its combined
// checksum the block's, for a block that splits into whole and short parts
// and one too small to split; without hashing it returns no sum.
func TestReadSplitCRC(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	p := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct{ off, n int }{{0, 7077888 / 4}, {12345, 1<<20 + 3}, {100, 60_000}} {
		buf := make([]byte, c.n)
		sum, err := readSplit(f, buf, int64(c.off), true)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, data[c.off:c.off+c.n]) {
			t.Fatalf("%d bytes at %d: the split read's bytes differ", c.n, c.off)
		}
		if got, want := sum(), format.CRC32C(data[c.off:c.off+c.n]); got != want {
			t.Fatalf("%d bytes at %d: split read's checksum %08x, want %08x", c.n, c.off, got, want)
		}
		if sum, err := readSplit(f, buf, int64(c.off), false); err != nil || sum != nil {
			t.Fatalf("%d bytes at %d, no hash: sum %v, error %v", c.n, c.off, sum != nil, err)
		}
	}
	// A read past the end fails, with no checksum (its parts that did
	// read have finished hashing before it returns: the buffer is reused).
	if sum, err := readSplit(f, make([]byte, 2<<20), int64(len(data)-1<<20), true); err == nil || sum != nil {
		t.Fatalf("a read past the end: sum %v, error %v", sum != nil, err)
	}
}
