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
// mixer (full attention or not) and whether a prefetch reaches it (a
// prediction made Options.PrefetchAhead layers before: none reaches a
// token's first layers).
type layerKind struct{ full, fetched bool }

// kindOf is position p's kind in a model whose layers repeat the stack's
// mixers (p%N; the preset's pattern, when N is a multiple of its
// interval).
func (m *Model) kindOf(p int) layerKind {
	return layerKind{m.layers[p%len(m.layers)].full, m.prefetch && p >= m.prefetchAhead}
}

// layersAt extrapolates the stack's per-layer times to a model of n
// layers: each position takes the mean time of the stack's layers of its
// kind, or of all of them where the stack has none of that kind. A stack
// of 4 layers prefetches two layers ahead for half its layers, the
// 60-layer model for 58: its plain mean, times 60, counts the first
// layers' waits 15 times over.
func (m *Model) layersAt(per []time.Duration, n int) time.Duration {
	sum, cnt := map[layerKind]time.Duration{}, map[layerKind]int{}
	var all time.Duration
	for l, d := range per {
		k := m.kindOf(l)
		sum[k] += d
		cnt[k]++
		all += d
	}
	var t time.Duration
	for p := range n {
		k := m.kindOf(p)
		if cnt[k] > 0 {
			t += sum[k] / time.Duration(cnt[k])
		} else {
			t += all / time.Duration(max(len(per), 1))
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
// full one) extrapolated to 60 layers, with and without a prefetch two
// layers ahead, against the sums done by hand.
func TestLayersAt(t *testing.T) {
	m := &Model{layers: make([]layer, 4), prefetchAhead: 2}
	m.layers[3].full = true
	ms := time.Millisecond
	per := []time.Duration{10 * ms, 12 * ms, 5 * ms, 7 * ms}
	// No prefetch: linear (10+12+5)/3 = 9 at 45 positions, full 7 at 15.
	if got, want := m.layersAt(per, 60), (45*9+15*7)*ms; got != want {
		t.Fatalf("without prefetch: %v, want %v", got, want)
	}
	// Prefetch two ahead: positions 0 and 1 unfetched linear (mean 11),
	// 43 fetched linear (5), 15 fetched full (7).
	m.prefetch = true
	if got, want := m.layersAt(per, 60), (2*11+43*5+15*7)*ms; got != want {
		t.Fatalf("two ahead: %v, want %v", got, want)
	}
	// A kind the stack lacks takes the mean of all: one ahead makes layer
	// 1 fetched too, and no kind is missing; a 1-layer stack has only
	// unfetched linear layers, so fetched positions take its one time.
	m.prefetchAhead = 1
	if got, want := m.layersAt(per, 60), (10+44*(12+5)/2+15*7)*ms/1; got != want {
		t.Fatalf("one ahead: %v, want %v", got, want)
	}
	one := &Model{layers: make([]layer, 1), prefetch: true, prefetchAhead: 2}
	if got, want := one.layersAt(per[:1], 60), 60*10*ms; got != want {
		t.Fatalf("one layer: %v, want %v", got, want)
	}
}
