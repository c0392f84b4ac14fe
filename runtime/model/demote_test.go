package model

import (
	"bytes"
	"container/list"
	"context"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// lruTier is the CPU backend with a GPU tier of n experts, least recently
// used out, that reports its evictions (backend.EvictionReporter) as
// CUDA's does.
type lruTier struct {
	backend.Backend
	n       int
	held    map[[2]int]*list.Element // of lruEntry
	order   *list.List
	evicted [][2]int
}

type lruEntry struct {
	key [2]int
	ws  []backend.Weight
}

func newLRUTier(n int) *lruTier {
	return &lruTier{Backend: cpu.New(cpu.Options{}), n: n, held: map[[2]int]*list.Element{}, order: list.New()}
}

func (f *lruTier) SetExpertCache(int64, int) error     { return nil }
func (f *lruTier) DeviceMemory() (int64, int64, error) { return 1 << 40, 1 << 40, nil }
func (f *lruTier) DropExpert(l, id int) error {
	if el := f.held[[2]int{l, id}]; el != nil {
		f.order.Remove(el)
		delete(f.held, [2]int{l, id})
	}
	return nil
}

func (f *lruTier) CachedExpert(l, id int) ([]backend.Tensor, bool) {
	el := f.held[[2]int{l, id}]
	if el == nil {
		return nil, false
	}
	f.order.MoveToFront(el)
	ts, err := f.bindAll(el.Value.(*lruEntry).ws)
	return ts, err == nil
}

// makeRoom evicts the least recent entry when the tier is full.
func (f *lruTier) makeRoom() {
	if f.order.Len() >= f.n {
		old := f.order.Back()
		k := old.Value.(*lruEntry).key
		f.order.Remove(old)
		delete(f.held, k)
		f.evicted = append(f.evicted, k)
	}
}

func (f *lruTier) BindExpert(l, id int, ws []backend.Weight) ([]backend.Tensor, error) {
	f.makeRoom()
	cp := make([]backend.Weight, len(ws))
	for i, w := range ws {
		w.Data, w.Scales, w.Biases = bytes.Clone(w.Data), bytes.Clone(w.Scales), bytes.Clone(w.Biases)
		cp[i] = w
	}
	f.held[[2]int{l, id}] = f.order.PushFront(&lruEntry{key: [2]int{l, id}, ws: cp})
	return f.bindAll(cp)
}

func (f *lruTier) Evicted(dst [][2]int) [][2]int {
	dst = append(dst, f.evicted...)
	f.evicted = f.evicted[:0]
	return dst
}

func (f *lruTier) bindAll(ws []backend.Weight) ([]backend.Tensor, error) {
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

// TestExclusiveTiers: below a GPU tier that reports its evictions, the
// host tier is its victim cache: with the two budgets together covering
// the model, a warm run serves every GPU-tier miss from the host tier (no
// read), where inclusive tiers of the same budgets serve only some; and
// both compute the logits of a run without tiers, bit for bit.
func TestExclusiveTiers(t *testing.T) {
	defer func(v, w bool) { exclusiveOff, demoteSync = v, w }(exclusiveOff, demoteSync)
	demoteSync = true
	g := readGolden(t, "bf16-long")
	ref, _ := goldenRun(t, open(t, "hf", 16, 0, Options{Backend: cpu.New(cpu.Options{})}), g)
	for _, excl := range []bool{true, false} {
		exclusiveOff = !excl
		probe := open(t, "hf", 16, 0, Options{Backend: cpu.New(cpu.Options{})})
		all := probe.Config.NumHiddenLayers * probe.Config.NumExperts
		gpu := newLRUTier(all * 2 / 5)
		m := open(t, "hf", 16, 0, Options{Backend: gpu, HostCache: int64(all*7/10) * probe.experts.set.Stride})
		var st0 ExpertStats
		for run := 1; run <= 2; run++ {
			st0 = m.ExpertStats()
			got, _ := goldenRun(t, m, g)
			if i := firstDiff(got, ref); i >= 0 {
				t.Fatalf("exclusive %v, run %d: logit %d is %v, without tiers %v", excl, run, i, got[i], ref[i])
			}
			m.experts.settleDemotions()
		}
		st := m.ExpertStats()
		uses, hits, host := st.Uses-st0.Uses, st.GPUHits-st0.GPUHits, st.HostHits-st0.HostHits
		miss := uses - hits
		t.Logf("exclusive %v, warm run: %d experts, %d GPU-tier hits, %d of the %d misses from the host tier", excl, uses, hits, host, miss)
		if miss == 0 {
			t.Fatalf("exclusive %v: a GPU tier of %d of %d experts missed nothing", excl, gpu.n, all)
		}
		switch {
		case excl && host != miss:
			t.Errorf("exclusive: %d of %d GPU-tier misses from the host tier, want all", host, miss)
		case !excl && host == miss:
			t.Errorf("inclusive: all %d GPU-tier misses from the host tier: the test no longer tells the two apart", miss)
		}
	}
}

// TestExclusiveTiersAsync: with the read-backs running beside the steps
// (as in use), the logits are those of a run without tiers, bit for bit,
// and Close stops the reader (run with -race).
func TestExclusiveTiersAsync(t *testing.T) {
	g := readGolden(t, "bf16")
	ref, _ := goldenRun(t, open(t, "hf", 16, 0, Options{Backend: cpu.New(cpu.Options{})}), g)
	probe := open(t, "hf", 16, 0, Options{Backend: cpu.New(cpu.Options{})})
	all := probe.Config.NumHiddenLayers * probe.Config.NumExperts
	m, err := Open(packed(t, "hf", 16), Options{Backend: newLRUTier(all / 4), HostCache: int64(all/2) * probe.experts.set.Stride})
	if err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 3; run++ {
		got, _ := goldenRun(t, m, g)
		if i := firstDiff(got, ref); i >= 0 {
			t.Fatalf("run %d: logit %d is %v, without tiers %v", run, i, got[i], ref[i])
		}
	}
	if st := m.ExpertStats(); st.HostHits == 0 {
		t.Errorf("no GPU-tier miss served by the host tier in three runs: %+v", st)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPreloadHostTier: with exclusive tiers Preload fills the host tier
// with what the GPU tier leaves out, so that with the two covering the
// model no step reads an expert from the files: every GPU-tier miss from
// the first token on is a host-tier hit, and the logits are those of a
// run without tiers.
func TestPreloadHostTier(t *testing.T) {
	defer func(v bool) { demoteSync = v }(demoteSync)
	demoteSync = true // a GPU tier's eviction is back in the host tier by the next step
	g := readGolden(t, "bf16")
	ref, _ := goldenRun(t, open(t, "hf", 16, 0, Options{Backend: cpu.New(cpu.Options{})}), g)
	probe := open(t, "hf", 16, 0, Options{Backend: cpu.New(cpu.Options{})})
	all := probe.Config.NumHiddenLayers * probe.Config.NumExperts
	n := all * 2 / 5
	m := open(t, "hf", 16, 0, Options{Backend: newLRUTier(n), GPUCache: int64(n) * probe.experts.tierEntryBytes(),
		HostCache: int64(all*7/10) * probe.experts.set.Stride})
	var calls, last int
	st, err := m.Preload(context.Background(), PreloadOptions{Progress: func(done, total int) {
		calls++
		if done != last+1 || total != all {
			t.Errorf("progress (%d, %d) after %d, want a count to %d", done, total, last, all)
		}
		last = done
	}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Experts+st.HostExperts != all || st.HostExperts == 0 || calls != all {
		t.Fatalf("Preload %+v after %d progress calls: want %d experts over the two tiers", st, calls, all)
	}
	got, _ := goldenRun(t, m, g)
	if i := firstDiff(got, ref); i >= 0 {
		t.Fatalf("logit %d is %v, without tiers %v", i, got[i], ref[i])
	}
	es := m.ExpertStats()
	if miss := es.Uses - es.GPUHits; miss == 0 || es.HostHits != miss {
		t.Errorf("after Preload: %d of %d GPU-tier misses from the host tier, want all (and some misses)", es.HostHits, miss)
	}
}

// TestPreloadHostTierMissRank: with a miss rank the host tier is inclusive,
// and Preload fills it all the same with what the GPU tier leaves out, and
// the GPU tier's evictions are read back into it, so that no miss is read
// from the files: every GPU-tier miss from the first token on is a
// host-tier hit, within the goldens.
func TestPreloadHostTierMissRank(t *testing.T) {
	defer func(v bool) { demoteSync = v }(demoteSync)
	demoteSync = true // a GPU tier's eviction is back in the host tier by the next step
	g := readGolden(t, "bf16")
	probe := open(t, "hf", 16, 0, Options{Backend: cpu.New(cpu.Options{})})
	all := probe.Config.NumHiddenLayers * probe.Config.NumExperts
	n := all * 2 / 5
	mb := cpu.New(cpu.Options{Threads: 2})
	defer mb.Close()
	m := open(t, "hf", 16, 0, Options{Backend: newLRUTier(n), GPUCache: int64(n) * probe.experts.tierEntryBytes(),
		HostCache: int64(all*7/10) * probe.experts.set.Stride, MissBackend: mb, MissShare: 0.5})
	st, err := m.Preload(context.Background(), PreloadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Experts+st.HostExperts != all || st.HostExperts == 0 {
		t.Fatalf("Preload %+v: want %d experts over the two tiers", st, all)
	}
	checkHiddenAndLogits(t, m, g)
	es := m.ExpertStats()
	if miss := es.Uses - es.GPUHits; miss == 0 || es.HostHits != miss {
		t.Errorf("after Preload: %d of %d GPU-tier misses from the host tier, want all (and some misses)", es.HostHits, miss)
	}
}
