package model

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/routetrace"
)

var routePrompt = []int{1, 5, 9, 13, 2, 7, 11, 3}

// recordRoutes runs ids through a fresh session of m (prefill of the
// first half, then one token at a time) and returns the logits of every
// step and the router's choices as a trace.
func recordRoutes(t *testing.T, m *Model, ids []int, src RouteSource) ([][]float32, *routetrace.Trace) {
	t.Helper()
	c := &m.Config
	tr, err := routetrace.New(routetrace.Header{Layers: c.NumHiddenLayers, Experts: c.NumExperts, K: m.K, Tokens: len(ids), Model: "recorded"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	s.Routes = src
	s.onRoute = func(l int, idx []int, w []float32) {
		for i, e := range idx {
			t, j := s.pos+i/m.K, i%m.K
			ids, ws := tr.At(t, l)
			ids[j], ws[j] = uint16(e), w[i]
		}
	}
	var out [][]float32
	half := len(ids) / 2
	lg, err := s.ForwardAll(ids[:half])
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, lg)
	for _, id := range ids[half:] {
		lg, err := s.Forward([]int{id})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, lg)
	}
	return out, tr
}

// TestRouteTraceReplay: the model's own routing, recorded into a trace,
// saved and loaded, and replayed in place of the router, gives
// bit-identical logits; another trace changes them.
func TestRouteTraceReplay(t *testing.T) {
	m := open(t, "mlx-4bit", 0, 0, Options{})
	want, rec := recordRoutes(t, m, routePrompt, nil)
	path := filepath.Join(t.TempDir(), "rec.fmrt")
	if err := rec.Save(path); err != nil {
		t.Fatal(err)
	}
	tr, err := routetrace.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	got, again := recordRoutes(t, m, routePrompt, tr)
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("step %d: replaying the recorded routing changed the logits", i)
		}
	}
	if !slices.Equal(again.IDs, rec.IDs) || !slices.Equal(again.Weights, rec.Weights) {
		t.Fatal("the replay routed differently from the trace")
	}

	c := &m.Config
	other, err := routetrace.Generate(routetrace.Options{Layers: c.NumHiddenLayers, Experts: c.NumExperts, K: m.K,
		Tokens: len(routePrompt), Seed: 5, Params: routetrace.Fitted["zipf"]})
	if err != nil {
		t.Fatal(err)
	}
	diff, routed := recordRoutes(t, m, routePrompt, other)
	if !slices.Equal(routed.IDs, other.IDs) || !slices.Equal(routed.Weights, other.Weights) {
		t.Fatal("the model did not route as the generated trace says")
	}
	same := 0
	for i := range want {
		if slices.Equal(diff[i], want[i]) {
			same++
		}
	}
	if same > 0 {
		t.Errorf("another trace left %d of %d steps' logits unchanged", same, len(want))
	}
}

// badSource hands out an expert id outside the model.
type badSource struct{ id int }

func (b badSource) Choose(l, pos int, idx []int, w []float32) error {
	for j := range idx {
		idx[j], w[j] = b.id+j, 0.5
	}
	return nil
}

// TestRouteSourceErrors: a source's error, or an id outside the model, is
// an error of the step, not a panic.
func TestRouteSourceErrors(t *testing.T) {
	m := open(t, "mlx-4bit", 0, 0, Options{})
	for _, c := range []struct {
		src  RouteSource
		want string
	}{
		{badSource{m.Config.NumExperts}, "outside [0,"},
		{badSource{-5}, "outside [0,"},
	} {
		s, _ := m.NewSession()
		s.Routes = c.src
		if _, err := s.Forward(routePrompt); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.src, err, c.want)
		}
	}
	short, _ := routetrace.New(routetrace.Header{Layers: m.Config.NumHiddenLayers, Experts: m.Config.NumExperts, K: m.K, Tokens: 2})
	for i := range short.IDs {
		short.IDs[i] = uint16(i % m.K)
	}
	s, _ := m.NewSession()
	s.Routes = short
	if _, err := s.Forward(routePrompt); err == nil || !strings.Contains(err.Error(), "token position 2") {
		t.Errorf("a trace shorter than the prompt: %v", err)
	}
}

// TestRouteLog: a routetrace.Recorder set as RouteLog records, position by
// position, exactly the routing the session used (the test hook's), with
// and without a RouteSource, and leaves the logits bit-identical.
func TestRouteLog(t *testing.T) {
	m := open(t, "mlx-4bit", 0, 0, Options{})
	want, rec := recordRoutes(t, m, routePrompt, nil)
	c := &m.Config
	other, err := routetrace.Generate(routetrace.Options{Layers: c.NumHiddenLayers, Experts: c.NumExperts, K: m.K,
		Tokens: len(routePrompt), Seed: 5, Params: routetrace.Fitted["zipf"]})
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []*routetrace.Trace{nil, other} {
		r, err := routetrace.NewRecorder(c.NumHiddenLayers, c.NumExperts, m.K)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := m.NewSession()
		s.RouteLog = r
		if src != nil {
			s.Routes = src
		}
		half := len(routePrompt) / 2
		var got [][]float32
		lg, err := s.ForwardAll(routePrompt[:half])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, lg)
		for _, id := range routePrompt[half:] {
			if lg, err = s.Forward([]int{id}); err != nil {
				t.Fatal(err)
			}
			got = append(got, lg)
		}
		tr, err := r.Trace()
		if err != nil {
			t.Fatal(err)
		}
		exp := rec
		if src != nil {
			exp = src
		} else {
			for i := range want {
				if !slices.Equal(got[i], want[i]) {
					t.Fatalf("step %d: recording changed the logits", i)
				}
			}
		}
		if tr.Tokens != len(routePrompt) || tr.Model != "recorded" || !slices.Equal(tr.IDs, exp.IDs) || !slices.Equal(tr.Weights, exp.Weights) {
			t.Errorf("source %v: recorded %d tokens (model %q), want the %d the session routed", src != nil, tr.Tokens, tr.Model, len(routePrompt))
		}
	}
}
