package model

import (
	"math"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
)

// goldenRun feeds a golden case's prompt (one batched prefill) and then its
// greedy continuation one token at a time, and returns every logit row it
// produced with the decode steps' Timing.
func goldenRun(t *testing.T, m *Model, g *golden) ([]float32, *Timing) {
	t.Helper()
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.ForwardAll(g.i64["input_ids"])
	if err != nil {
		t.Fatal(err)
	}
	tm := &Timing{}
	s.Timing = tm
	for _, id := range g.i64["generated_ids"] {
		lg, err := s.Forward([]int{id})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, lg...)
	}
	return out, tm
}

// TestGoldenWarmCache runs every golden case twice in one process per GPU
// tier setting (default budget, and a budget of forty experts of the
// 128, which evicts all the time) and requires the logits of both runs to be
// bit-identical to a run without the tier: a hit computes exactly what a
// miss does. The uncached run is held to the golden's tolerance. With
// FMOE_TEST_BACKEND=cuda this runs on the GPU's expert cache; on a backend
// without one (the CPU) it checks that the tier settings change nothing.
func TestGoldenWarmCache(t *testing.T) {
	for _, c := range cases {
		t.Run(c.src+"/"+c.golden, func(t *testing.T) {
			g := readGolden(t, c.golden)
			ref, _ := goldenRun(t, open(t, c.src, c.bits, c.k, Options{GPUCache: GPUCacheOff}), g)
			m0 := open(t, c.src, c.bits, c.k, Options{GPUCache: GPUCacheOff})
			V := m0.Config.VocabSize
			nIn := len(g.i64["input_ids"])
			want := append(append([]float32(nil), g.f32["logits"]...), g.f32["generated_logits"]...)
			// Rows: the prompt's positions (golden "logits"), then one per
			// fed generated token; feeding token j yields the logits that
			// chose token j+1 (golden "generated_logits" row j+1).
			nGen := len(g.i64["generated_ids"])
			worst := 0.0
			for p := 0; p < nIn+nGen-1; p++ {
				w := p
				if p >= nIn {
					w = p + 1
				}
				worst = max(worst, rel(ref[p*V:(p+1)*V], want[w*V:(w+1)*V]))
			}
			if worst > tolLogits {
				t.Fatalf("uncached run: logits relative error %.3g > %g", worst, tolLogits)
			}
			type tier struct {
				name         string
				budget, host int64
			}
			stride := m0.experts.set.Stride
			tiers := []tier{{"default", GPUCacheAuto, 0}, {"host tier of forty", GPUCacheOff, 40 * stride}}
			_, cached := m0.be.(backend.ExpertCache)
			if cached { // elsewhere a budget is refused (TestGPUCacheRefused in cmd/fmoe-run)
				tiers = append(tiers, tier{"forty experts", 40 * stride, 0}, tier{"forty, host tier of forty", 40 * stride, 40 * stride})
			}
			for _, b := range tiers {
				m := open(t, c.src, c.bits, c.k, Options{GPUCache: b.budget, HostCache: b.host})
				for run := 1; run <= 2; run++ {
					got, tm := goldenRun(t, m, g)
					if i := firstDiff(got, ref); i >= 0 {
						t.Fatalf("GPU tier %s, run %d: logit %d (position %d) is %v, without the tier %v",
							b.name, run, i, i/V, got[i], ref[i])
					}
					d := &tm.Decode
					t.Logf("tiers %s (GPU budget %d B), run %d: %d of %d experts from the GPU tier, %d from the host tier, %.1f MB/token over PCIe",
						b.name, m.CacheBudget(), run, d.GPUHits, d.ExpertUses, d.HostHits, float64(d.DeviceBytes)/1e6/float64(d.Tokens))
					if b.host > 0 && (d.HostHits == 0 || d.GPUHits+d.HostHits == d.ExpertUses) {
						t.Errorf("a host tier of forty served %d of the %d experts the GPU tier missed, want some but not all",
							d.HostHits, d.ExpertUses-d.GPUHits)
					}
					if !cached {
						continue
					}
					switch {
					case b.budget == GPUCacheAuto && run == 2 && d.GPUHits != d.ExpertUses:
						t.Errorf("warm run: %d of %d experts from the tier, want all", d.GPUHits, d.ExpertUses)
					case b.budget > 0 && d.GPUHits == d.ExpertUses:
						t.Errorf("a forty-expert tier served every one of %d experts", d.ExpertUses)
					}
				}
			}
		})
	}
}

// firstDiff is the first index where a and b differ bit for bit, or -1.
func firstDiff(a, b []float32) int {
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}
