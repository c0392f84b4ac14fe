package model

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/mmap"
	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
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

// BenchmarkExpertCheckOverlap measures what checking a first read beside its compute saves
// (docs/benchmarks.md, "A first read is checked beside its compute"): per iteration K random
// experts of one layer are read, bound and computed on the model's backend (one token's gate,
// up, SwiGLU and down), every read a first read (the layer's verified set is cleared, as in a
// cold process). "before" checksums each block before its bind (Options.VerifyBeforeCompute),
// "beside" while it is computed, awaiting the checks every four layers (a decode step of
// gpu-bench.sh's four-layer pack awaits them once, after its last layer), and "none" checks
// nothing: the floor. The CPU backend computes on half the cores
// (FMOE_BENCH_THREADS overrides), leaving the others to the reads and checks as a GPU does.
// Run it on a pack of real expert sizes (FMOE_BENCH_MODEL); on the tiny test pack the blocks
// are too small for the check to show.
func BenchmarkExpertCheckOverlap(b *testing.B) {
	dir := benchModelDir(b)
	threads := envInt("FMOE_BENCH_THREADS", max(1, runtime.NumCPU()/2))
	for _, mode := range []string{"none", "before", "beside"} {
		cb := cpu.New(cpu.Options{Threads: threads})
		defer cb.Close()
		m, err := Open(dir, Options{Backend: cb, VerifyBeforeCompute: mode == "before"})
		if err != nil {
			b.Fatal(err)
		}
		if mode == "none" {
			m.experts.check = checkOff
		}
		b.Run(mode, func(b *testing.B) {
			r, be := m.experts, m.be
			H, I, k := m.Config.HiddenSize, m.Config.MoeIntermediateSize, m.K
			var bufs [4]backend.Buffer // x, gate, up, out
			for i, n := range []int{H, I, I, H} {
				if bufs[i], err = be.Alloc(n); err != nil {
					b.Fatal(err)
				}
				defer be.Free(bufs[i])
			}
			x := make([]float32, H)
			for i := range x {
				x[i] = float32(i%7) / 7
			}
			if err := be.Write(bufs[0], x); err != nil {
				b.Fatal(err)
			}
			compute := func(_ int, w *[3]backend.Weight) error {
				var ts [3]backend.Tensor
				for i := range w {
					var err error
					if ts[i], err = be.Bind(w[i]); err != nil {
						return err
					}
				}
				return errors.Join(be.MatMul(bufs[1], ts[0], bufs[0], 1), be.MatMul(bufs[2], ts[1], bufs[0], 1),
					be.SwiGLU(bufs[1], bufs[1], bufs[2]), be.MatMul(bufs[3], ts[2], bufs[1], 1),
					be.Release(ts[0]), be.Release(ts[1]), be.Release(ts[2]))
			}
			rng := rand.New(rand.NewPCG(5, 1))
			layers := len(r.files)
			b.SetBytes(int64(k) * r.set.Stride)
			i := 0
			for b.Loop() {
				l := i % layers
				i++
				for j := range r.verified[l] {
					r.verified[l][j].Store(0)
				}
				if err := r.streamTimed(l, rng.Perm(m.Config.NumExperts)[:k], nil, compute); err != nil {
					b.Fatal(err)
				}
				if i%4 == 0 {
					if _, err := r.awaitChecks(); err != nil {
						b.Fatal(err)
					}
				}
			}
			if _, err := r.awaitChecks(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(ms(b.Elapsed())/float64(b.N), "ms/layer")
		})
		m.Close()
	}
}
