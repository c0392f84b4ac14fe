package model

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/mmap"
	"github.com/fmoe/fmoe/runtime/backend"
)

// The cost of the run path's integrity checks (docs/benchmarks.md, "Checksums on the run
// path"), at Qwen3.5-397B-A17B's sizes: one 4-bit expert block is 7,077,888 bytes (gate, up
// and down, each 1024x4096 at 4 bits with bf16 scales and biases per 64), the dense weights
// 5.5 GB. Compare BenchmarkBlockCRC with BenchmarkBlockPread (the read it follows, from the
// page cache: the cheapest read there is) and with BenchmarkExpertRead.

const block397 = 7_077_888

func randomFile(b *testing.B, size int64) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), format.WeightsName)
	buf := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for n := int64(0); n < size; n += int64(len(buf)) {
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	return path
}

// BenchmarkBlockCRC is the CRC-32C of one expert block (hash/crc32 Castagnoli: SSE4.2 on
// amd64, the CRC32 instructions on arm64).
func BenchmarkBlockCRC(b *testing.B) {
	buf := alignedBuf(block397)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	b.SetBytes(block397)
	for b.Loop() {
		format.CRC32C(buf)
	}
}

// BenchmarkBlockPread is one pread of an expert block from a file in the page cache.
func BenchmarkBlockPread(b *testing.B) {
	const blocks = 16
	f, err := os.Open(randomFile(b, blocks*block397))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := alignedBuf(block397)
	for i := range blocks { // warm the cache
		f.ReadAt(buf, int64(i)*block397)
	}
	b.SetBytes(block397)
	i := 0
	for b.Loop() {
		if _, err := f.ReadAt(buf, int64(i%blocks)*block397); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkDenseCheck is checkDense over a 1 GiB weights file of 64 MiB tensors in the page
// cache; BenchmarkDenseMapped is the same CRC through a fresh mapping, the alternative that
// page faults make slower.
func BenchmarkDenseCheck(b *testing.B) {
	const size, part = 1 << 30, 64 << 20
	path := randomFile(b, size)
	man := &format.Manifest{}
	data, _ := os.ReadFile(path)
	for off := int64(0); off < size; off += part {
		s := format.Span{Offset: off, Size: part, CRC32C: format.CRC32C(data[off : off+part])}
		man.Tensors = append(man.Tensors, format.Tensor{Name: fmt.Sprint(off), Data: s})
	}
	data = nil
	b.SetBytes(size)
	b.Run("pread", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if err := checkDense(filepath.Dir(path), man); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("mapped", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			f, err := mmap.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			for _, t := range man.Tensors {
				format.CRC32C(f.Data[t.Data.Offset:t.Data.End()])
			}
			f.Close()
		}
	})
}

// BenchmarkExpertReadCheck is BenchmarkExpertRead's buffered K=4 case with every read
// checksummed (the first read of a block, or Options.VerifyEveryRead) and with none (every
// later read of a block by default).
func BenchmarkExpertReadCheck(b *testing.B) {
	dir := benchModelDir(b)
	for _, mode := range []struct {
		name string
		c    checkMode
	}{{"none", checkOff}, {"crc", checkEvery}} {
		m, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		m.experts.check = mode.c
		r := m.experts
		k := min(4, m.Config.NumExperts)
		rng := rand.New(rand.NewPCG(4, 1))
		nop := func(int, *[3]backend.Weight) error { return nil }
		b.Run(mode.name, func(b *testing.B) {
			b.SetBytes(int64(k) * r.set.Stride)
			i := 0
			for b.Loop() {
				if err := r.stream(i%len(r.files), rng.Perm(m.Config.NumExperts)[:k], nop); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(ms(b.Elapsed())/float64(b.N), "ms/layer")
		})
		m.Close()
	}
}
