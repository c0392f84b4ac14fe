package pack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/fmoe/fmoe/internal/pagecache"
	"github.com/pierrec/lz4/v4"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/format/lz4file"
	"github.com/fmoe/fmoe/quant"
)

// The LZ4 experiment (docs/negative-results.md) on 397B-shaped experts: 4-bit gate/up
// [1024, 4096] and down [4096, 1024], group 64, 7,077,888 bytes a block. Two contents:
//
//	gaussian  weights drawn like the quant study's synthetic experts (Gaussian, std 1/sqrt(in),
//	          a heavy-tailed outlier in 1024) and quantised with MLX's rule, as real packs are
//	uniform   the same scales and biases with uniformly random nibbles, the maximum-entropy case
//
// FMOE_LZ4_BENCH_EXPERTS sets how many experts are written (default 8); cold reads evict the
// file from the page cache with posix_fadvise(POSIX_FADV_DONTNEED) before every read (Linux).

const benchStride = 7_077_888

// benchSet is the 397B expert layout, built as the packer builds it.
func benchSet(b *testing.B) format.ExpertSet {
	cfg := &format.Config{HiddenSize: 4096, MoeIntermediateSize: 1024}
	set, err := expertSetLayout(cfg, 4, 64)
	if err != nil || set.Stride != benchStride {
		b.Fatalf("layout: %v, stride %d", err, set.Stride)
	}
	return set
}

// synthExpert quantises one synthetic expert into a block.
func synthExpert(set *format.ExpertSet, seed uint64, uniform bool) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x397))
	blk := make([]byte, set.Stride)
	for _, p := range set.Projections {
		rows, cols := p.Shape[0], p.Shape[1]
		std := 1 / math.Sqrt(float64(cols))
		row := make([]float32, cols)
		words := make([]uint32, cols/8)
		sc, bi := make([]uint16, cols/64), make([]uint16, cols/64)
		for r := 0; r < rows; r++ {
			for i := range row {
				v := rng.NormFloat64() * std
				if rng.IntN(1024) == 0 {
					v *= min(5/math.Sqrt(1-rng.Float64()), 100)
				}
				row[i] = quant.BF16ToF32(quant.F32ToBF16(float32(v)))
			}
			quant.QuantizeRowWith(quant.RuleMLX, row, 4, 64, words, sc, bi)
			for i, w := range words {
				if uniform {
					w = rng.Uint32()
				}
				binary.LittleEndian.PutUint32(blk[p.Data.Offset+int64(r*len(words)+i)*4:], w)
			}
			for i := range sc {
				binary.LittleEndian.PutUint16(blk[p.Scales.Offset+int64(r*len(sc)+i)*2:], sc[i])
				binary.LittleEndian.PutUint16(blk[p.Biases.Offset+int64(r*len(bi)+i)*2:], bi[i])
			}
		}
	}
	return blk
}

// lz4Bench is a raw layer file and its LZ4 copy on disk.
type lz4Bench struct {
	raw, lz4dir string
	n           int
	ratio       float64
}

var (
	lz4BenchOnce sync.Once
	lz4Benches   map[string]*lz4Bench
	lz4BenchErr  error
)

func lz4BenchFiles(b *testing.B) map[string]*lz4Bench {
	lz4BenchOnce.Do(func() {
		n := 8
		if s := os.Getenv("FMOE_LZ4_BENCH_EXPERTS"); s != "" {
			n, _ = strconv.Atoi(s)
		}
		root, err := os.MkdirTemp("", "fmoe-lz4-bench-")
		if err != nil {
			lz4BenchErr = err
			return
		}
		set := benchSet(b)
		lz4Benches = map[string]*lz4Bench{}
		for _, content := range []string{"gaussian", "uniform"} {
			lz4Benches[content], lz4BenchErr = writeLZ4Bench(filepath.Join(root, content), &set, n, content == "uniform")
			if lz4BenchErr != nil {
				return
			}
		}
	})
	if lz4BenchErr != nil {
		b.Fatal(lz4BenchErr)
	}
	return lz4Benches
}

func writeLZ4Bench(dir string, set *format.ExpertSet, n int, uniform bool) (*lz4Bench, error) {
	zdir := filepath.Join(dir, "lz4")
	if err := os.MkdirAll(zdir, 0o755); err != nil {
		return nil, err
	}
	raw := filepath.Join(dir, "layer_00.bin")
	f, err := os.Create(raw)
	if err != nil {
		return nil, err
	}
	set.Layers = []format.ExpertLayer{{File: "layer_00.bin", Size: int64(n) * set.Stride, CRC32C: make([]uint32, n)}}
	for e := range n {
		blk := synthExpert(set, uint64(e), uniform)
		set.Layers[0].CRC32C[e] = format.CRC32C(blk)
		if _, err := f.Write(blk); err != nil {
			return nil, err
		}
	}
	f.Sync()
	f.Close()
	set.Dir = "."
	st := &LZ4Stats{}
	// Every block LZ4-encoded, even where that grows it: the point is the decompression cost.
	o := LZ4Options{Model: dir, Workers: 2, forceBlock: true}
	if err := lz4Layer(context.Background(), o, set, 0, filepath.Join(zdir, LZ4FileName(0)), st, nil); err != nil {
		return nil, err
	}
	return &lz4Bench{raw: raw, lz4dir: zdir, n: n, ratio: float64(st.RawBytes) / float64(st.LZ4Bytes)}, nil
}

// warmCache reads a file once so warm runs start with every page cached.
func warmCache(b *testing.B, path string) {
	if _, err := os.ReadFile(path); err != nil {
		b.Fatal(err)
	}
}

func dropCache(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pagecache.Drop(f); errors.Is(err, pagecache.ErrUnsupported) {
		b.Skip(err)
	} else if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkLZ4Expert reads one expert per iteration: a raw pread of the block, or a pread of
// its LZ4 block plus decompression, from a warm or an evicted page cache.
func BenchmarkLZ4Expert(b *testing.B) {
	files := lz4BenchFiles(b)
	for _, content := range []string{"gaussian", "uniform"} {
		fb := files[content]
		for _, cache := range []string{"warm", "cold"} {
			b.Run(fmt.Sprintf("%s/%s/pread", content, cache), func(b *testing.B) {
				f, err := os.Open(fb.raw)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				buf := make([]byte, benchStride)
				b.SetBytes(benchStride)
				if cache == "warm" {
					warmCache(b, fb.raw)
				}
				for i := 0; b.Loop(); i++ {
					if cache == "cold" {
						b.StopTimer()
						dropCache(b, fb.raw)
						b.StartTimer()
					}
					if _, err := f.ReadAt(buf, int64(i%fb.n)*benchStride); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("%s/%s/lz4", content, cache), func(b *testing.B) {
				z, err := lz4file.Open(fb.lz4dir, 0)
				if err != nil {
					b.Fatal(err)
				}
				defer z.Close()
				path := filepath.Join(fb.lz4dir, LZ4FileName(0))
				buf := make([]byte, benchStride)
				b.SetBytes(benchStride)
				if cache == "warm" {
					warmCache(b, path)
				}
				for i := 0; b.Loop(); i++ {
					if cache == "cold" {
						b.StopTimer()
						dropCache(b, path)
						b.StartTimer()
					}
					if err := z.ReadExpert(i%fb.n, buf); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(fb.ratio, "ratio")
			})
		}
	}
}

// BenchmarkLZ4Decompress isolates the CPU cost: one expert decompressed from memory.
func BenchmarkLZ4Decompress(b *testing.B) {
	set := benchSet(b)
	for _, content := range []string{"gaussian", "uniform"} {
		b.Run(content, func(b *testing.B) {
			raw := synthExpert(&set, 1, content == "uniform")
			comp := make([]byte, lz4.CompressBlockBound(len(raw)))
			var c lz4.Compressor
			n, err := c.CompressBlock(raw, comp)
			if err != nil || n == 0 {
				b.Fatalf("compress: %d, %v", n, err)
			}
			dst := make([]byte, len(raw))
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := lz4.UncompressBlock(comp[:n], dst); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(raw))/float64(n), "ratio")
		})
	}
}
