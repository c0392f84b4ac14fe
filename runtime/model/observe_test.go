package model

import (
	"slices"
	"testing"
	"time"
)

// observed runs a prefill of the first half of ids and then one token at
// a time, and returns the logits of every step.
func observedRun(t *testing.T, s *Session, ids []int) [][]float32 {
	t.Helper()
	var out [][]float32
	half := len(ids) / 2
	lg, err := s.Forward(ids[:half])
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, lg)
	for _, id := range ids[half:] {
		if lg, err = s.Forward([]int{id}); err != nil {
			t.Fatal(err)
		}
		out = append(out, lg)
	}
	return out
}

// TestObserve: an observer sees every step with the routing the router
// chose (the same a test's own hook sees), expert bytes that add up to
// K·stride per layer of a decode step and phase times that fit in the
// step's wall time; observing changes no logit, leaves Session.Timing as
// it was, and stops when the observer is removed.
func TestObserve(t *testing.T) {
	m := open(t, "mlx-4bit", 0, 0, Options{})
	plain, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	want := observedRun(t, plain, routePrompt)

	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	type route struct{ pos, layer int }
	hook := map[route][]int{}
	s.onRoute = func(l int, idx []int, _ []float32) { hook[route{s.pos, l}] = slices.Clone(idx) }
	var steps []StepStats
	m.Observe(func(st *StepStats) {
		c := *st
		c.Layers = make([]LayerStats, len(st.Layers))
		for i, L := range st.Layers {
			c.Layers[i] = L
			c.Layers[i].Experts = slices.Clone(L.Experts)
		}
		steps = append(steps, c)
	})
	got := observedRun(t, s, routePrompt)
	m.Observe(nil)
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("step %d: observing changed the logits", i)
		}
	}
	if s.Timing != nil {
		t.Errorf("Session.Timing is %v after observed steps, want nil as the caller left it", s.Timing)
	}
	half := len(routePrompt) / 2
	if len(steps) != 1+len(routePrompt)-half {
		t.Fatalf("%d steps observed, want %d", len(steps), 1+len(routePrompt)-half)
	}
	stride := m.experts.set.Stride
	for i, st := range steps {
		wantT, wantPos := 1, half+i-1
		if i == 0 {
			wantT, wantPos = half, 0
		}
		if st.Tokens != wantT || st.Pos != wantPos || st.Decode != (i > 0) || st.K != m.K {
			t.Errorf("step %d: tokens %d pos %d decode %v K %d, want %d %d %v %d", i, st.Tokens, st.Pos, st.Decode, st.K, wantT, wantPos, i > 0, m.K)
		}
		if len(st.Layers) != m.Config.NumHiddenLayers {
			t.Fatalf("step %d: %d layers, want %d", i, len(st.Layers), m.Config.NumHiddenLayers)
		}
		sum := st.Embed + st.Head
		for l, L := range st.Layers {
			if h := hook[route{st.Pos, l}]; !slices.Equal(L.Experts, h) || len(h) != st.Tokens*m.K {
				t.Errorf("step %d layer %d: observed experts %v, the route hook saw %v", i, l, L.Experts, h)
			}
			if L.Full != m.layers[l].full {
				t.Errorf("step %d layer %d: Full %v, want %v", i, l, L.Full, m.layers[l].full)
			}
			if L.Time[PhaseEmbed] != 0 || L.Time[PhaseHead] != 0 {
				t.Errorf("step %d layer %d: embed/head time charged to a layer", i, l)
			}
			mixer := L.Time[PhaseDeltaNet]
			if L.Full {
				mixer = L.Time[PhaseAttention]
			}
			if mixer <= 0 || L.Time[PhaseRouting] <= 0 || L.Time[PhaseExpertCompute] <= 0 {
				t.Errorf("step %d layer %d: no mixer, routing or expert compute time: %v", i, l, L.Time)
			}
			if st.Decode && (L.ExpertReads != int64(m.K) || L.ExpertBytes != int64(m.K)*stride) {
				t.Errorf("step %d layer %d: %d reads of %d bytes, want K=%d blocks of %d", i, l, L.ExpertReads, L.ExpertBytes, m.K, stride)
			}
			if L.ExpertUses != L.ExpertReads || L.GPUHits != 0 || L.HostHits != 0 || L.DeviceBytes != 0 {
				t.Errorf("step %d layer %d: %d uses for %d reads, tiers %d %d %d without tiers", i, l, L.ExpertUses, L.ExpertReads, L.GPUHits, L.HostHits, L.DeviceBytes)
			}
			if L.CachedReads > L.ProbedReads || L.ProbedReads > L.ExpertReads {
				t.Errorf("step %d layer %d: cached %d > probed %d > reads %d", i, l, L.CachedReads, L.ProbedReads, L.ExpertReads)
			}
			for _, d := range L.Time {
				sum += d
			}
		}
		if st.Embed <= 0 || st.Head <= 0 || sum > st.Wall {
			t.Errorf("step %d: embed %v head %v, phases %v against wall %v", i, st.Embed, st.Head, sum, st.Wall)
		}
	}

	// Removed: no more calls, and the hook it chained is back.
	n := len(steps)
	hook = map[route][]int{}
	if _, err := s.Forward([]int{3}); err != nil {
		t.Fatal(err)
	}
	if len(steps) != n || len(hook) != m.Config.NumHiddenLayers {
		t.Errorf("after Observe(nil): %d more steps observed, %d layers reached the test hook", len(steps)-n, len(hook))
	}
}

// TestObserveWithTiming: a caller's Timing still gets every step, and the
// observed layers add up to what it gathered.
func TestObserveWithTiming(t *testing.T) {
	m := open(t, "mlx-4bit", 0, 0, Options{})
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	tm := &Timing{}
	s.Timing = tm
	var bytes int64
	var compute time.Duration
	m.Observe(func(st *StepStats) {
		for _, L := range st.Layers {
			bytes += L.ExpertBytes
			compute += L.Time[PhaseExpertCompute]
		}
	})
	defer m.Observe(nil)
	observedRun(t, s, routePrompt)
	if s.Timing != tm {
		t.Fatal("observing replaced the caller's Timing")
	}
	all := tm.Prefill.ExpertBytes + tm.Decode.ExpertBytes
	if bytes != all || compute != tm.Prefill.Time[PhaseExpertCompute]+tm.Decode.Time[PhaseExpertCompute] {
		t.Errorf("observed %d bytes and %v expert compute, Timing %d and %v", bytes, compute, all,
			tm.Prefill.Time[PhaseExpertCompute]+tm.Decode.Time[PhaseExpertCompute])
	}
	if tm.Decode.Steps != len(routePrompt)-len(routePrompt)/2 {
		t.Errorf("Timing counted %d decode steps", tm.Decode.Steps)
	}
}
