package model

import (
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
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
					// A host tier alone must both hit and miss (it is bounded); under
					// a GPU tier it sees only that tier's misses, which forty entries
					// may then hold entirely (seen on CUDA with bf16-long's warm run).
					if b.host > 0 && (d.HostHits == 0 || (b.budget == GPUCacheOff && d.HostHits == d.ExpertUses)) {
						t.Errorf("a host tier of forty served %d of the %d experts the GPU tier missed, want some (and, alone, not all)",
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

// firstDiff is backendtest.FirstDiff.
var firstDiff = backendtest.FirstDiff

// fakeTier is a CPU backend that claims a GPU tier on a device with the
// given memory, to test how Open sizes and refuses budgets. It caches
// nothing: CachedExpert always misses and BindExpert binds uncached.
type fakeTier struct {
	backend.Backend
	free, total int64
	budget      int64
}

func (f *fakeTier) SetExpertCache(b int64, _ int) error { f.budget = b; return nil }

// MatMulBatch keeps the wrapped backend's batched matmul (a CUDA device in
// TestSplitRankTiers), so that its rank computes what the reference does.
func (f *fakeTier) MatMulBatch(ys []backend.Buffer, ws []backend.Tensor, xs []backend.Buffer, Ts []int) error {
	return matMulBatch(f.Backend, ys, ws, xs, Ts)
}
func (f *fakeTier) DeviceMemory() (int64, int64, error) { return f.free, f.total, nil }
func (f *fakeTier) CachedExpert(int, int) ([]backend.Tensor, bool) {
	return nil, false
}
func (f *fakeTier) DropExpert(int, int) error { return nil }
func (f *fakeTier) BindExpert(_, _ int, ws []backend.Weight) ([]backend.Tensor, error) {
	out := make([]backend.Tensor, len(ws))
	for i, w := range ws {
		t, err := f.Bind(w)
		if err != nil {
			return nil, err
		}
		out[i] = t
	}
	return out, nil
}

// TestGPUCacheBudget: the default budget is the free memory less what the
// context needs and the margin; a budget past that is refused naming the
// memory free and total; GPUCacheOff sets none.
func TestGPUCacheBudget(t *testing.T) {
	const gib = 1 << 30
	dir := packed(t, "hf", 16)
	be := &fakeTier{Backend: cpu.New(cpu.Options{}), free: 10 * gib, total: 16 * gib}
	m, err := Open(dir, Options{Backend: be, MaxContext: 4096})
	if err != nil {
		t.Fatal(err)
	}
	want := be.free - m.contextBytes() - gib // margin: max(1 GiB, 16 GiB/32)
	if be.budget != want || m.CacheBudget() != want {
		t.Errorf("default budget %d (model says %d), want %d", be.budget, m.CacheBudget(), want)
	}
	// The tier path (lookups that miss, BindExpert) computes what Bind does.
	ref := open(t, "hf", 16, 0, Options{Backend: cpu.New(cpu.Options{})})
	ids := []int{1, 5, 9, 13}
	s1, _ := m.NewSession()
	s2, _ := ref.NewSession()
	got, err1 := s1.ForwardAll(ids)
	wantLg, err2 := s2.ForwardAll(ids)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if i := firstDiff(got, wantLg); i >= 0 {
		t.Fatalf("logit %d differs through the tier path", i)
	}
	if st := m.ExpertStats(); st.Uses == 0 || st.GPUHits != 0 || st.DeviceBytes == 0 {
		t.Errorf("stats through a tier that never hits: %+v", st)
	}
	m.Close()
	_, err = Open(dir, Options{Backend: be, MaxContext: 4096, GPUCache: 12 * gib})
	if err == nil || !strings.Contains(err.Error(), "10.0 GiB free of 16.0 GiB") {
		t.Fatalf("a 12 GiB tier on a 10 GiB-free card: %v", err)
	}
	m, err = Open(dir, Options{Backend: be, GPUCache: GPUCacheOff})
	if err != nil {
		t.Fatal(err)
	}
	if be.budget != 0 || m.CacheBudget() != 0 {
		t.Errorf("GPUCacheOff set a budget of %d", be.budget)
	}
	// A tier set after Open (as BenchmarkTieredDecode does) is rank 0's.
	if err := m.setupCache(gib); err != nil {
		t.Fatal(err)
	}
	s3, _ := m.NewSession()
	if _, err := s3.ForwardAll(ids); err != nil {
		t.Fatal(err)
	}
	if st := m.ExpertStats(); st.DeviceBytes == 0 {
		t.Errorf("a tier set after Open bound no bytes: %+v", st)
	}
	m.Close()
}
