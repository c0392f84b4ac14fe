package model

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// stamper is a backend that times points of a step on the device's own
// clock without a sync inside the step (CUDA's Stamp and Stamps).
type stamper interface {
	Stamp() error
	Stamps(dst []time.Duration) ([]time.Duration, error)
}

// layerClock runs n steps with a stamp as the host begins each layer and
// one after the last layer's ops, and returns each layer's mean device
// time: from the end of the work queued before it to the end of its own,
// its waits for copies and for the host included.
func layerClock(s *Session, st stamper, n int, step func(int)) ([]time.Duration, error) {
	L := len(s.m.layers)
	sum := make([]time.Duration, L)
	var errs error
	stamp := func() { errs = errors.Join(errs, st.Stamp()) }
	s.beforeLayer = func(int) { stamp() }
	s.beforeHead = stamp
	defer func() { s.beforeLayer, s.beforeHead = nil, nil }()
	var d []time.Duration
	for range n {
		step(1)
		var err error
		if d, err = st.Stamps(d[:0]); err != nil {
			return nil, err
		}
		if errs != nil {
			return nil, errs
		}
		if len(d) != L+1 {
			return nil, fmt.Errorf("layer clock: %d stamps in a step of %d layers, want %d", len(d), L, L+1)
		}
		for l := range L {
			sum[l] += d[l+1] - d[l]
		}
	}
	for l := range sum {
		sum[l] /= time.Duration(max(n, 1))
	}
	return sum, nil
}

// layerKind is what a layer's time depends on beside its routing: its
// mixer (full attention or not), whether a prefetch reaches it (one made
// Options.PrefetchAhead layers before: none reaches a token's first
// layers), and whether its misses' copies queue behind prefetches for the
// layers after it, queued at the layers before it (none at a token's last
// layers, whose targets would lie past the end, nor one layer ahead,
// whose prefetches go after the layer's own misses).
type layerKind struct{ full, reached, loaded bool }

// kindOf is position p's kind in a model of n layers whose mixers repeat
// the stack's (p%N: the preset's pattern, when N is a multiple of its
// interval).
func (m *Model) kindOf(p, n int) layerKind {
	d := m.prefetchAhead
	// prefetches queued at layers q in [p+1-d, p-1] for q+d past p, and
	// within the model (q+d < n)
	loaded := m.prefetch && p >= 1 && max(0, p+1-d) <= min(p-1, n-1-d)
	return layerKind{m.layers[p%len(m.layers)].full, m.prefetch && p >= d, loaded}
}

// layersAt extrapolates the stack's per-layer times to a model of n
// layers: each position takes the mean time of the stack's layers of its
// kind; where the stack has none, of those alike in the prefetch's terms,
// else of its mixer, else of all. A stack of 4 layers with a prefetch two
// layers ahead has two layers no prefetch reaches, one whose misses queue
// behind no prefetch, and one like the 60-layer model's 56 in between:
// its plain mean, times 60, counts the edges' costs 15 times over.
func (m *Model) layersAt(per []time.Duration, n int) time.Duration {
	kinds := make([]layerKind, len(per))
	for l := range per {
		kinds[l] = m.kindOf(l, len(per))
	}
	alike := []func(a, b layerKind) bool{
		func(a, b layerKind) bool { return a == b },
		func(a, b layerKind) bool { return a.reached == b.reached && a.loaded == b.loaded },
		func(a, b layerKind) bool { return a.full == b.full },
		func(a, b layerKind) bool { return true },
	}
	var t time.Duration
	for p := range n {
		k := m.kindOf(p, n)
		for _, same := range alike {
			var sum time.Duration
			cnt := 0
			for l, d := range per {
				if same(kinds[l], k) {
					sum, cnt = sum+d, cnt+1
				}
			}
			if cnt > 0 {
				t += sum / time.Duration(cnt)
				break
			}
		}
	}
	return t
}

// wallStamps is a stamper on the host's clock: the CPU backend's ops are
// done when they return.
type wallStamps struct {
	at   []time.Time
	drop bool // lose every other stamp
}

func (w *wallStamps) Stamp() error {
	if w.drop && len(w.at)%2 == 1 {
		w.at = append(w.at[:len(w.at)-1], time.Now())
		return nil
	}
	w.at = append(w.at, time.Now())
	return nil
}

func (w *wallStamps) Stamps(dst []time.Duration) ([]time.Duration, error) {
	for _, t := range w.at {
		dst = append(dst, t.Sub(w.at[0]))
	}
	w.at = w.at[:0]
	return dst, nil
}

// TestLayerClock: each layer's time is its own (a 4 ms pause in layer 1's
// routing shows in layer 1 alone), the hooks are gone afterwards, and a
// step that lost a stamp is an error, not a shifted table.
func TestLayerClock(t *testing.T) {
	m := open(t, "hf", 16, 0, Options{})
	s, _ := m.NewSession()
	s.onRoute = func(l int, _ []int, _ []float32) {
		if l == 1 {
			time.Sleep(4 * time.Millisecond)
		}
	}
	step := func(n int) {
		for range n {
			if _, err := s.ForwardGreedy(context.Background(), []int{7}); err != nil {
				t.Fatal(err)
			}
		}
	}
	per, err := layerClock(s, &wallStamps{}, 3, step)
	if err != nil {
		t.Fatal(err)
	}
	if len(per) != len(m.layers) {
		t.Fatalf("%d times for %d layers", len(per), len(m.layers))
	}
	for l, d := range per {
		if l == 1 && d < 4*time.Millisecond || l != 1 && d >= per[1]-3*time.Millisecond {
			t.Fatalf("layer times %v: want layer 1's 4 ms pause in layer 1 alone", per)
		}
	}
	if s.beforeLayer != nil || s.beforeHead != nil {
		t.Fatal("layerClock left its hooks set")
	}
	if _, err := layerClock(s, &wallStamps{drop: true}, 1, step); err == nil || !strings.Contains(err.Error(), "stamps in a step") {
		t.Fatalf("lost stamps: err %v", err)
	}
}

// TestLayersAt: a 4-layer stack (three linear-attention layers, then a
// full one) extrapolated to 60 layers, with and without a prefetch, against
// the sums done by hand.
func TestLayersAt(t *testing.T) {
	m := &Model{layers: make([]layer, 4), prefetchAhead: 2}
	m.layers[3].full = true
	ms := time.Millisecond
	per := []time.Duration{10 * ms, 12 * ms, 5 * ms, 7 * ms}
	// No prefetch: linear (10+12+5)/3 = 9 at 45 positions, full 7 at 15.
	if got, want := m.layersAt(per, 60), (45*9+15*7)*ms; got != want {
		t.Fatalf("without prefetch: %v, want %v", got, want)
	}
	// Two ahead: position 0 is layer 0 (not reached, nothing ahead of its
	// misses), 1 is layer 1 (not reached, behind layer 2's prefetches),
	// 59 is layer 3 (reached, nothing ahead); the 57 between are layer 2's
	// kind, the 14 full ones among them too (the stack has no full layer
	// of that kind: the same prefetch terms stand in).
	m.prefetch = true
	if got, want := m.layersAt(per, 60), (10+12+57*5+7)*ms; got != want {
		t.Fatalf("two ahead: %v, want %v", got, want)
	}
	// One ahead: a layer's prefetches follow its misses, so none is
	// loaded; position 0 is layer 0, linear reached ones are layers 1 and
	// 2 (8.5) at 44 positions, full ones layer 3 at 15.
	m.prefetchAhead = 1
	if got, want := m.layersAt(per, 60), (10*ms + 44*17*ms/2 + 15*7*ms); got != want {
		t.Fatalf("one ahead: %v, want %v", got, want)
	}
	// A 1-layer stack has one kind: every position takes its time.
	one := &Model{layers: make([]layer, 1), prefetch: true, prefetchAhead: 2}
	if got, want := one.layersAt(per[:1], 60), 60*10*ms; got != want {
		t.Fatalf("one layer: %v, want %v", got, want)
	}
	// Three ahead in 8 layers: reached from 3; loaded from 1 (layer 3's
	// prefetch, queued at 0) to 6 (layer 7's, queued at 4), not 7.
	m8 := &Model{layers: make([]layer, 8), prefetch: true, prefetchAhead: 3}
	for p, want := range []layerKind{{false, false, false}, {false, false, true}, {false, false, true},
		{false, true, true}, {false, true, true}, {false, true, true}, {false, true, true}, {false, true, false}} {
		if got := m8.kindOf(p, 8); got != want {
			t.Fatalf("three ahead, layer %d of 8: %+v, want %+v", p, got, want)
		}
	}
}
