package verify

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/fmoe/fmoe/internal/pagecache"

	"github.com/fmoe/fmoe/format"
)

// Verify's throughput beside `cat > /dev/null` over the same files, on a synthetic pack with
// 397B's expert shape (hidden 4096, moe_intermediate 1024, 4-bit: 7,077,888-byte blocks) and
// small dense tensors. FMOE_BENCH_LAYERS (default 2) and FMOE_BENCH_EXPERTS (default 64) set its
// size; cold runs evict every file with posix_fadvise(POSIX_FADV_DONTNEED) first (Linux).

func benchConfig(layers, experts int) format.Config {
	types := make([]string, layers)
	for i := range types {
		types[i] = format.LinearAttention
		if i%4 == 3 {
			types[i] = format.FullAttention
		}
	}
	return format.Config{Architecture: format.ArchQwen35MoE, HiddenSize: 4096, NumHiddenLayers: layers,
		VocabSize: 8192, LayerTypes: types, NumAttentionHeads: 32, NumKeyValueHeads: 2, HeadDim: 256,
		AttnOutputGate: true, RopeTheta: 1e7, PartialRotaryFactor: 0.25, RotaryDim: 64,
		LinearNumKeyHeads: 16, LinearNumValueHeads: 64, LinearKeyHeadDim: 128, LinearValueHeadDim: 128,
		LinearConvKernelDim: 4, NumExperts: experts, NumExpertsPerTok: min(10, experts), MoeIntermediateSize: 1024,
		SharedExpertIntermediateSize: 1024, RMSNormEps: 1e-6, MaxPositionEmbeddings: 262144, EOSTokenIDs: []int{1}}
}

// randFill fills b with pseudo-random bytes (content does not matter to a checksum).
func randFill(rng *rand.Rand, b []byte) {
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, rng.Uint64())
		b = b[8:]
	}
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

func place(off *int64, size, align int64) format.Span {
	*off = (*off + align - 1) / align * align
	s := format.Span{Offset: *off, Size: size}
	*off += size
	return s
}

// synthPack writes a valid pack of random content into dir.
func synthPack(dir string, layers, experts int) error {
	rng := rand.New(rand.NewPCG(1, 2))
	m := format.Manifest{Format: "fmoe", Version: format.Version, CreatedBy: "verify benchmark",
		Source: format.Source{Layout: "hf", Architecture: format.ArchQwen35MoE}, Config: benchConfig(layers, experts)}
	cfg := &m.Config
	if err := os.MkdirAll(filepath.Join(dir, format.ExpertsDir), 0o755); err != nil {
		return err
	}
	var off int64
	for _, s := range format.Schema(cfg) {
		t := format.Tensor{Name: s.Name, Shape: s.Shape, DType: format.DTypeBF16}
		if s.Matrix && s.Shape[1]%64 == 0 {
			t.DType, t.Bits, t.GroupSize = format.DTypeU32, 4, 64
			if s.Gate {
				t.Bits = 8
			}
		}
		size, err := format.DataSize(t.DType, t.Shape, t.Bits)
		if err != nil {
			return err
		}
		t.Data = place(&off, size, format.WeightsAlign)
		if t.Bits > 0 {
			gs, _ := format.GroupParamSize(t.Shape, 64)
			sc, bi := place(&off, gs, format.WeightsAlign), place(&off, gs, format.WeightsAlign)
			t.Scales, t.Biases = &sc, &bi
		}
		m.Tensors = append(m.Tensors, t)
	}
	w := make([]byte, off)
	for i := range m.Tensors {
		t := &m.Tensors[i]
		for _, sp := range []*format.Span{&t.Data, t.Scales, t.Biases} {
			if sp != nil {
				randFill(rng, w[sp.Offset:sp.End()])
				sp.CRC32C = format.CRC32C(w[sp.Offset:sp.End()])
			}
		}
	}
	m.Weights = format.WeightsFile{File: format.WeightsName, Size: off, Align: format.WeightsAlign}
	if err := os.WriteFile(filepath.Join(dir, format.WeightsName), w, 0o644); err != nil {
		return err
	}
	set := format.ExpertSet{Bits: 4, Dir: format.ExpertsDir, Align: format.ExpertAlign}
	var boff int64
	for _, name := range format.ExpertProjections {
		shape, _ := format.ExpertShape(cfg, name)
		size, _ := format.DataSize(format.DTypeU32, shape, 4)
		gs, _ := format.GroupParamSize(shape, 64)
		p := format.Tensor{Name: name, DType: format.DTypeU32, Shape: shape, Bits: 4, GroupSize: 64}
		p.Data = place(&boff, size, format.ExpertAlign)
		sc, bi := place(&boff, gs, format.ExpertAlign), place(&boff, gs, format.ExpertAlign)
		p.Scales, p.Biases = &sc, &bi
		set.Projections = append(set.Projections, p)
	}
	set.Stride = (boff + format.ExpertAlign - 1) / format.ExpertAlign * format.ExpertAlign
	blk := make([]byte, set.Stride)
	for l := range layers {
		lf := format.ExpertLayer{File: format.LayerFileName(l), Size: int64(experts) * set.Stride, CRC32C: make([]uint32, experts)}
		f, err := os.Create(filepath.Join(dir, set.Dir, lf.File))
		if err != nil {
			return err
		}
		for e := range experts {
			randFill(rng, blk)
			lf.CRC32C[e] = format.CRC32C(blk)
			if _, err := f.Write(blk); err != nil {
				f.Close()
				return err
			}
		}
		if err := f.Close(); err != nil {
			return err
		}
		set.Layers = append(set.Layers, lf)
	}
	m.Experts = []format.ExpertSet{set}
	for _, name := range requiredFiles {
		data := []byte("{}\n")
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
		m.Files = append(m.Files, format.SideFile{Name: name, Size: int64(len(data)), CRC32C: format.CRC32C(data)})
	}
	if err := format.Validate(&m); err != nil {
		return err
	}
	data, err := format.Encode(&m)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, format.ManifestName), data, 0o644)
}

var (
	benchOnce  sync.Once
	benchDir   string
	benchFiles []string
	benchBytes int64
	benchErr   error
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func benchPack(b *testing.B) {
	benchOnce.Do(func() {
		benchDir = filepath.Join(sharedTemp(b), "bench")
		if benchErr = synthPack(benchDir, envInt("FMOE_BENCH_LAYERS", 2), envInt("FMOE_BENCH_EXPERTS", 64)); benchErr != nil {
			return
		}
		exec.Command("sync").Run() // dirty pages cannot be evicted for the cold runs
		filepath.Walk(benchDir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() && fi.Name() != format.ManifestName {
				benchFiles = append(benchFiles, p)
				benchBytes += fi.Size()
			}
			return nil
		})
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
}

func setCache(b *testing.B, cold bool) {
	b.StopTimer()
	defer b.StartTimer()
	for _, p := range benchFiles {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		if cold {
			err = pagecache.Drop(f)
		} else {
			err = pagecache.WillNeed(f)
		}
		f.Close()
		if errors.Is(err, pagecache.ErrUnsupported) {
			b.Skip(err)
		} else if err != nil {
			b.Fatal(err)
		}
	}
	if !cold {
		exec.Command("cat", benchFiles...).Run()
	}
}

func BenchmarkVerify(b *testing.B) {
	benchPack(b)
	for _, cache := range []string{"cold", "warm"} {
		for _, workers := range []int{1, 2, DefaultWorkers(), 8} {
			b.Run(fmt.Sprintf("%s/workers=%d", cache, workers), func(b *testing.B) {
				b.SetBytes(benchBytes)
				for b.Loop() {
					setCache(b, cache == "cold")
					r, err := Run(context.Background(), Options{Model: benchDir, Workers: workers})
					if err != nil || !r.OK {
						b.Fatalf("%v %v", err, r.Problems)
					}
				}
			})
		}
		b.Run(cache+"/cat", func(b *testing.B) {
			b.SetBytes(benchBytes)
			for b.Loop() {
				setCache(b, cache == "cold")
				cmd := exec.Command("cat", benchFiles...) // Stdout nil is /dev/null
				if err := cmd.Run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
