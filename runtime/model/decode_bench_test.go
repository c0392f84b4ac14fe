package model

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
)

// The benchmarks run on the tiny fixture, or on the packed model named by
// FMOE_BENCH_MODEL (scripts/bench-decode.sh points it at a synthetic
// 397B pack). Expert choices come from a fixed seed, so two identical runs
// read the same experts: the first after dropping the page cache measures
// the disk, the second the cache.

func benchModelDir(b *testing.B) string {
	if d := os.Getenv("FMOE_BENCH_MODEL"); d != "" {
		return d
	}
	return packed(b, "mlx-4bit", 0)
}

// BenchmarkExpertRead times the runtime's own expert path (K parallel
// preads into the reader's pool, as a decode step does) on K random
// distinct experts of one layer per iteration, cycling through the layers.
// Within a run no expert is read twice until a layer's experts are used
// up, so a cold run stays cold.
func BenchmarkExpertRead(b *testing.B) {
	dir := benchModelDir(b)
	for _, k := range []int{4, 10} {
		for _, direct := range []bool{false, true} {
			mode := "buffered"
			if direct {
				mode = "direct"
			}
			// Opened and seeded outside the benchmark function so that
			// the probe run (b.N = 1) and the timed run share one
			// sequence of experts.
			m, err := Open(dir, Options{DirectIO: direct})
			if err != nil {
				b.Logf("k=%d/%s: %v", k, mode, err)
				continue
			}
			perm := make([][]int, len(m.experts.files))
			cursor := make([]int, len(perm))
			rng := rand.New(rand.NewPCG(uint64(k), 1))
			layer := 0
			b.Run(fmt.Sprintf("k=%d/%s", k, mode), func(b *testing.B) {
				r := m.experts
				kk := min(k, m.Config.NumExperts)
				ids := make([]int, kk)
				nop := func(int, *[3]backend.Weight) error { return nil }
				b.SetBytes(int64(kk) * r.set.Stride)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					l := layer % len(r.files)
					layer++
					if perm[l] == nil || cursor[l]+kk > len(perm[l]) {
						perm[l], cursor[l] = rng.Perm(m.Config.NumExperts), 0
					}
					copy(ids, perm[l][cursor[l]:])
					cursor[l] += kk
					if err := r.stream(l, ids, nop); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(ms(b.Elapsed())/float64(b.N), "ms/layer")
			})
			m.Close()
		}
	}
}

// BenchmarkDecode times decode steps after a short prompt and reports the
// Timing breakdown: ms per layer, MB read per token and the page-cache
// share of the reads.
func BenchmarkDecode(b *testing.B) {
	dir := benchModelDir(b)
	for _, k := range []int{4, 10} {
		b.Run(fmt.Sprintf("k=%d", k), func(b *testing.B) {
			m, err := Open(dir, Options{ExpertsPerToken: k})
			if err != nil {
				b.Skip(err)
			}
			defer m.Close()
			s, err := m.NewSession()
			if err != nil {
				b.Fatal(err)
			}
			V := m.Config.VocabSize
			if _, err := s.Forward([]int{1 % V, 2 % V, 3 % V, 4 % V}); err != nil {
				b.Fatal(err)
			}
			tm := &Timing{}
			s.Timing = tm
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := s.Forward([]int{(i*7919 + 5) % V}); err != nil {
					b.Fatal(err)
				}
			}
			d := &tm.Decode
			b.ReportMetric(ms(layerTime(d))/float64(d.Tokens*tm.Layers), "ms/layer")
			b.ReportMetric(ms(d.Time[PhaseExpertWait])/float64(d.Tokens*tm.Layers), "io-wait-ms/layer")
			b.ReportMetric(float64(d.ExpertBytes)/1e6/float64(d.Tokens), "MB/token")
			b.ReportMetric(float64(d.Tokens)/d.Wall.Seconds(), "tok/s")
			if sh := d.CacheShare(); sh >= 0 {
				b.ReportMetric(sh, "cache-share")
			}
		})
	}
}
