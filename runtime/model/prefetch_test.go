package model

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/routetrace"
)

// pfTier is lruTier with a prefetch whose copy reads the caller's bytes as
// late as a device's may: at the first use of the entry or when
// PrefetchDone reports it done (the second poll), whichever comes first.
// A caller that lets the host bytes change before then gets other
// weights, and other logits.
type pfTier struct {
	*lruTier
	pending map[[2]int]*lruEntry
	toks    map[int]*pfTok
	next    int
	copies  int
	// idleAsks counts LinkIdle's calls (a paced step's).
	idleAsks int
}

type pfTok struct {
	key   [2]int
	ws    []backend.Weight // the caller's, until copied
	polls int
}

func newPFTier(n int) *pfTier {
	return &pfTier{lruTier: newLRUTier(n), pending: map[[2]int]*lruEntry{}, toks: map[int]*pfTok{}}
}

func (f *pfTier) PrefetchExpert(l, id int, ws []backend.Weight) (int, bool, error) {
	k := [2]int{l, id}
	if f.held[k] != nil {
		return 0, false, nil
	}
	f.makeRoom()
	e := &lruEntry{key: k} // ws filled by the copy
	f.held[k] = f.order.PushFront(e)
	f.pending[k] = e
	f.next++
	f.toks[f.next] = &pfTok{key: k, ws: append([]backend.Weight(nil), ws...)}
	return f.next, true, nil
}

// copyNow makes tok's copy happen (if it has not).
func (f *pfTier) copyNow(p *pfTok) {
	e := f.pending[p.key]
	if e == nil || e.ws != nil || p.ws == nil {
		return
	}
	for _, w := range p.ws {
		w.Data, w.Scales, w.Biases = bytes.Clone(w.Data), bytes.Clone(w.Scales), bytes.Clone(w.Biases)
		e.ws = append(e.ws, w)
	}
	p.ws = nil
	f.copies++
}

func (f *pfTier) PrefetchDone(tok int, wait bool) (bool, error) {
	p := f.toks[tok]
	if p == nil {
		return false, errSpent
	}
	if p.polls++; !wait && p.polls < 2 {
		return false, nil
	}
	f.copyNow(p)
	delete(f.toks, tok)
	return true, nil
}

func (f *pfTier) CachedExpert(l, id int) ([]backend.Tensor, bool) {
	k := [2]int{l, id}
	if e := f.pending[k]; e != nil {
		for _, p := range f.toks {
			if p.key == k {
				f.copyNow(p)
			}
		}
		delete(f.pending, k)
	}
	return f.lruTier.CachedExpert(l, id)
}

func (f *pfTier) PrefetchPending(l, id int) bool { return f.pending[[2]int{l, id}] != nil }

// LinkIdle reports the link idle at every other call, so that a paced
// step (Options.PrefetchPace) issues some predictions when it asks and
// leaves others queued, some of them to be dropped.
func (f *pfTier) LinkIdle() (bool, error) {
	f.idleAsks++
	return f.idleAsks%2 == 0, nil
}

// ReadReady: the fake reads synchronously (no backend.AsyncReader), so a
// paced wait never asks.
func (f *pfTier) ReadReady() (bool, error) {
	return false, bytesErr("pfTier: no asynchronous read outstanding")
}

var errSpent = bytesErr("prefetch token spent")

type bytesErr string

func (e bytesErr) Error() string { return string(e) }

// recordedRoutes keeps the router's own choice (Choose changes nothing)
// and predicts layer l+1 from a recording of the same run, with its first
// pick replaced by another expert: one wrong prediction in K.
type recordedRoutes struct {
	picks map[[2]int][]int // (layer, position) -> ids
	E     int
}

func (r *recordedRoutes) Choose(int, int, []int, []float32) error { return nil }

func (r *recordedRoutes) Predict(l, pos int, dst []int) []int {
	p := r.picks[[2]int{l, pos}]
	dst = append(dst, p...)
	if len(dst) > 0 {
		dst[0] = (dst[0] + 1) % r.E
	}
	return dst
}

// TestPrefetchGolden: with the next layer's picks predicted (one in K
// wrong), prefetches from the host tier into a GPU tier too small for
// the model compute the logits of a run without them, bit for bit; they
// are issued, some are used, and every copy ends within its step. On the
// CPU it runs on pfTier (whose copies read the host bytes as late as a
// device may); with FMOE_TEST_BACKEND=cuda on the GPU tier itself.
func TestPrefetchGolden(t *testing.T) {
	// The host path, bit for bit: design E's prefetches (whose device
	// weights may differ by ulps) are TestDevicePartialOwnPrediction's and
	// TestDeviceTablePrefetch's.
	defer func(v, p bool) { demoteSync, devMissOn = v, p }(demoteSync, devMissOn)
	demoteSync, devMissOn = true, false
	g := readGolden(t, "bf16-long")
	probe := open(t, "hf", 16, 0, Options{})
	all := probe.Config.NumHiddenLayers * probe.Config.NumExperts
	stride := probe.experts.set.Stride
	rec := &recordedRoutes{picks: map[[2]int][]int{}, E: probe.Config.NumExperts}
	// The reference: no tiers; its routing recorded for the predictions.
	s, err := probe.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	s.onRoute = func(l int, idx []int, _ []float32) {
		if len(idx) == probe.K { // one-token steps
			rec.picks[[2]int{l, s.pos}] = append([]int(nil), idx...)
		}
	}
	ref := sessionRun(t, s, g, nil)
	var be backend.Backend
	var fake *pfTier
	budget := int64(all/3) * stride
	if tb := testBackend(t); tb != nil {
		if _, ok := tb.(backend.ExpertPrefetcher); !ok {
			t.Skipf("backend %s does not prefetch", tb.Name())
		}
		be = tb
	} else {
		fake = newPFTier(all / 3)
		be, budget = fake, 0
	}
	// own: the model's own prediction (layer.predict), no route source.
	// pace: Options.PrefetchPace (pace.go).
	for _, c := range []struct {
		excl, own   bool
		ahead, pace int
	}{{true, false, 1, 0}, {false, false, 1, 0}, {true, false, 2, 0}, {true, true, 1, 0}, {false, true, 2, 0},
		{true, false, 2, 1}, {false, true, 2, 2}} {
		excl := c.excl
		asks0 := 0
		if fake != nil {
			asks0 = fake.idleAsks
		}
		func() {
			defer func(v bool) { exclusiveOff = v }(exclusiveOff)
			exclusiveOff = !excl
			m := open(t, "hf", 16, 0, Options{Backend: be, GPUCache: budget, HostCache: int64(all) * stride, Prefetch: true, PrefetchAhead: c.ahead, PrefetchPace: c.pace})
			if err := m.PrefetchCheck(); err != nil {
				t.Fatal(err)
			}
			for run := 1; run <= 2; run++ {
				st0 := m.ExpertStats()
				s, err := m.NewSession()
				if err != nil {
					t.Fatal(err)
				}
				if !c.own {
					s.Routes = rec
				}
				got := sessionRun(t, s, g, func() {
					if len(s.pf.flight) != 0 || len(s.pf.wants) != 0 {
						t.Fatalf("%d prefetches in flight, %d queued after a step", len(s.pf.flight), len(s.pf.wants))
					}
				})
				if i := firstDiff(got, ref); i >= 0 {
					t.Fatalf("exclusive %v, run %d: logit %d is %v, without tiers %v", excl, run, i, got[i], ref[i])
				}
				st := m.ExpertStats()
				pf, used := st.Prefetched-st0.Prefetched, st.PrefetchUsed-st0.PrefetchUsed
				t.Logf("own %v, %d ahead, paced %d, exclusive %v, run %d: %d prefetched, %d used; %d GPU-tier hits of %d", c.own, c.ahead, c.pace, excl, run, pf, used, st.GPUHits-st0.GPUHits, st.Uses-st0.Uses)
				if pf == 0 || used > pf {
					t.Errorf("exclusive %v, run %d: %d prefetched, %d used: want some prefetched, used <= prefetched", excl, run, pf, used)
				}
			}
			// Some prefetch must have been used over the two runs (on CUDA's
			// own policy a warm run 2 layers ahead on random weights used none).
			if st := m.ExpertStats(); st.PrefetchUsed == 0 {
				t.Errorf("own %v, %d ahead, exclusive %v: none of %d prefetches used", c.own, c.ahead, excl, st.Prefetched)
			}
			if fake != nil && (c.pace > 0) != (fake.idleAsks > asks0) {
				t.Errorf("paced %d: the link asked about %d times", c.pace, fake.idleAsks-asks0)
			}
			m.experts.settleDemotions()
			m.Close()
		}()
	}
	// Without a host tier there is nothing to copy from: refused, named.
	m := open(t, "hf", 16, 0, Options{Backend: be, GPUCache: budget, Prefetch: true})
	if err := m.PrefetchCheck(); err == nil || !strings.Contains(err.Error(), "host tier") {
		t.Errorf("prefetch without a host tier: %v", err)
	}
	m.Close()
	if fake != nil && (fake.copies == 0 || len(fake.toks) != 0) {
		t.Errorf("the fake tier copied %d prefetches, %d tokens never reported done", fake.copies, len(fake.toks))
	}
}

// TestBlurredTrace: the benchmark's predictor names the share of the next
// layer's picks it is set to, and distinct ids that the layer may pick.
func TestBlurredTrace(t *testing.T) {
	const L, E, K, N = 4, 512, 10, 400
	tr, err := routetrace.Generate(routetrace.Options{Layers: L, Experts: E, K: K, Tokens: N, Seed: 3, Params: routetrace.Fitted["mix"]})
	if err != nil {
		t.Fatal(err)
	}
	for _, acc := range []float64{0, 0.766, 1} {
		p := &blurredTrace{Trace: tr, acc: acc, E: E, K: K}
		idx, w := make([]int, K), make([]float32, K)
		right, all := 0, 0
		for pos := 0; pos < N; pos++ {
			for l := 0; l+1 < L; l++ {
				got := p.Predict(l+1, pos, nil)
				if err := tr.Choose(l+1, pos, idx, w); err != nil {
					t.Fatal(err)
				}
				if len(got) != K {
					t.Fatalf("predicted %d ids, want %d", len(got), K)
				}
				for _, id := range got {
					if id < 0 || id >= E {
						t.Fatalf("predicted expert %d outside [0, %d)", id, E)
					}
					if slices.Contains(idx, id) {
						right++
					}
				}
				all += K
			}
		}
		if share := float64(right) / float64(all); share < acc-0.02 || share > acc+0.02 {
			t.Errorf("accuracy %v: %.3f of the picks predicted", acc, share)
		}
	}
}

// sessionRun feeds g's prompt in one step and its generated tokens one at
// a time, calling each (if set) after each of those, and returns every
// logit; it closes s.
func sessionRun(t *testing.T, s *Session, g *golden, each func()) []float32 {
	t.Helper()
	defer s.Close()
	out, err := s.ForwardAll(g.i64["input_ids"])
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range g.i64["generated_ids"] {
		lg, err := s.Forward([]int{id})
		if err != nil {
			t.Fatal(err)
		}
		if each != nil {
			each()
		}
		out = append(out, lg...)
	}
	return out
}
