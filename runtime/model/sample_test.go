package model

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"
)

func TestSamplerGreedy(t *testing.T) {
	var s Sampler
	id, err := s.Sample([]float32{1, 3, 3, 2})
	if err != nil || id != 1 {
		t.Fatalf("greedy = %d, %v; want 1 (first of the tied maxima)", id, err)
	}
	if _, err := s.Sample(nil); err == nil {
		t.Fatal("sampling empty logits succeeded")
	}
	inf := float32(math.Inf(1))
	for _, c := range []struct {
		lg   []float32
		want int
	}{{[]float32{5, 1, 2}, 0}, {[]float32{-inf, -inf, -1}, 2}, {[]float32{-inf, -inf}, 0}, {[]float32{1, 2, inf, inf}, 2}} {
		if id, _ := s.Sample(c.lg); id != c.want {
			t.Errorf("greedy over %v = %d, want %d", c.lg, id, c.want)
		}
	}
}

// BenchmarkSampleGreedy: greedy over Qwen3.5's 248,320 logits, once a token.
func BenchmarkSampleGreedy(b *testing.B) {
	lg := make([]float32, 248320)
	for i := range lg {
		lg[i] = float32(math.Sin(float64(i)))
	}
	var s Sampler
	for b.Loop() {
		if _, err := s.Sample(lg); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSamplerDistribution(t *testing.T) {
	logits := []float32{0, float32(math.Log(2)), float32(math.Log(3)), -50}
	count := func(s Sampler, n int) []int {
		c := make([]int, len(logits))
		for i := 0; i < n; i++ {
			id, err := s.Sample(logits)
			if err != nil {
				t.Fatal(err)
			}
			c[id]++
		}
		return c
	}
	// Temperature 1: p ∝ 1:2:3:~0.
	n := 60000
	c := count(Sampler{Temperature: 1, Seed: 1}, n)
	for i, want := range []float64{1.0 / 6, 2.0 / 6, 3.0 / 6} {
		if got := float64(c[i]) / float64(n); math.Abs(got-want) > 0.01 {
			t.Errorf("token %d: frequency %.3f, want %.3f", i, got, want)
		}
	}
	// Top-k 2 keeps tokens 2 and 1 (3:2).
	c = count(Sampler{Temperature: 1, TopK: 2, Seed: 2}, n)
	if c[0] != 0 || c[3] != 0 || math.Abs(float64(c[2])/float64(n)-0.6) > 0.01 {
		t.Errorf("top-k 2 counts %v", c)
	}
	// Top-p 0.5 keeps only token 2 (p = 0.5 reaches it).
	c = count(Sampler{Temperature: 1, TopP: 0.5, Seed: 3}, 1000)
	if c[2] != 1000 {
		t.Errorf("top-p 0.5 counts %v", c)
	}
	// Same seed, same sequence.
	a, b := Sampler{Temperature: 0.8, Seed: 7}, Sampler{Temperature: 0.8, Seed: 7}
	for i := 0; i < 100; i++ {
		x, _ := a.Sample(logits)
		y, _ := b.Sample(logits)
		if x != y {
			t.Fatalf("draw %d differs with the same seed", i)
		}
	}
}

func TestGenerateStops(t *testing.T) {
	g := readGolden(t, "bf16")
	m := open(t, "hf", 16, 0, Options{})
	s, _ := m.NewSession()
	want := g.i64["generated_ids"]
	var seen []int
	var inFwd []time.Duration
	const pause = 2 * time.Millisecond
	start := time.Now()
	got, err := s.Generate(g.i64["input_ids"], 16, nil, []int{want[5]}, func(id int) bool {
		seen = append(seen, id)
		inFwd = append(inFwd, s.ForwardTime())
		time.Sleep(pause) // the caller's time between steps: not the forward's
		return true
	})
	wall := time.Since(start)
	// ForwardTime grows with each step and leaves the caller's time out.
	for i := 1; i < len(inFwd); i++ {
		if inFwd[i] <= inFwd[i-1] {
			t.Errorf("step %d: ForwardTime %v after %v", i, inFwd[i], inFwd[i-1])
		}
	}
	if f := s.ForwardTime(); f <= 0 || f > wall-time.Duration(len(inFwd))*pause {
		t.Errorf("ForwardTime %v of a %v run that slept %d × %v between steps", f, wall, len(inFwd), pause)
	}
	if err != nil {
		t.Fatal(err)
	}
	stopAt := slices.Index(want, want[5]) + 1
	if !slices.Equal(got, want[:stopAt]) || !slices.Equal(seen, got) {
		t.Fatalf("generated %v (seen %v), want %v", got, seen, want[:stopAt])
	}
	if s.Pos() != len(g.i64["input_ids"])+stopAt-1 {
		t.Fatalf("position %d after generating", s.Pos())
	}
}

// TestForwardInto: ForwardContextInto writes the logits into the caller's
// buffer when it holds a vocabulary (the same values as Forward's), and
// into a new slice when it does not.
func TestForwardInto(t *testing.T) {
	m := open(t, "hf", 16, 0, Options{})
	a, _ := m.NewSession()
	b, _ := m.NewSession()
	defer a.Close()
	defer b.Close()
	V := m.Config.VocabSize
	buf := make([]float32, V+5)
	for i, ids := range [][]int{{1, 2, 3}, {4}, {5}} {
		want, err := a.Forward(ids)
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.ForwardContextInto(context.Background(), buf, ids)
		if err != nil {
			t.Fatal(err)
		}
		if &got[0] != &buf[0] || len(got) != V || firstDiff(got, want) >= 0 {
			t.Fatalf("step %d: %d logits in the caller's buffer: %v, same as Forward's: %v", i, len(got), &got[0] == &buf[0], firstDiff(got, want) < 0)
		}
	}
	small := make([]float32, 3)
	got, err := b.ForwardContextInto(context.Background(), small, []int{6})
	if err != nil || len(got) != V || &got[0] == &small[0] {
		t.Fatalf("a buffer too small: %d logits, %v", len(got), err)
	}
}
