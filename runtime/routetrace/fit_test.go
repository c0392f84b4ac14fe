package routetrace

import (
	"math"
	"testing"
)

// Tolerances of the fit, in hit-rate points (0.01 = 1 point): the mean
// over seeds 1–3 (what Fit minimised) and any single seed (seed-to-seed
// spread is about ±1.5 points at 16 entries).
const (
	tolMean = 0.025
	tolSeed = 0.035
)

// TestFitFixedSeed: a generated trace (K=4, 200 tokens, seed 1) has
// flash-moe's per-layer LRU hit rates at 16/32/64/128 entries.
func TestFitFixedSeed(t *testing.T) {
	f := FlashMoE
	for _, m := range Models {
		tr, err := Generate(Options{Layers: f.Layers, Experts: f.Experts, K: f.K, Tokens: f.Tokens, Seed: 1, Params: Fitted[m]})
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range f.Sizes {
			got := mean(SimulateLRU(tr, c, 0, f.Tokens))
			t.Logf("%s seed 1: %d entries %.1f%% (flash-moe %.0f%%)", m, c, 100*got, 100*f.Hit[i])
			if math.Abs(got-f.Hit[i]) > tolSeed {
				t.Errorf("%s: %d entries: hit rate %.3f, flash-moe %.2f (tolerance %.3f)", m, c, got, f.Hit[i], tolSeed)
			}
		}
	}
}

// TestFitAcrossSeeds: the fit is the model's, not one seed's: each of
// seeds 1–6 within tolSeed, their mean within tolMean.
func TestFitAcrossSeeds(t *testing.T) {
	f := FlashMoE
	seeds := []uint64{1, 2, 3, 4, 5, 6}
	for _, m := range Models {
		all := make([]float64, len(f.Sizes))
		for _, s := range seeds {
			c, err := LRUCurve(Fitted[m], f.Layers, f.Experts, f.K, f.Tokens, 0, f.Sizes, []uint64{s})
			if err != nil {
				t.Fatal(err)
			}
			for i := range c {
				all[i] += c[i] / float64(len(seeds))
				if math.Abs(c[i]-f.Hit[i]) > tolSeed {
					t.Errorf("%s seed %d: %d entries: %.3f, flash-moe %.2f", m, s, f.Sizes[i], c[i], f.Hit[i])
				}
			}
		}
		for i := range all {
			if math.Abs(all[i]-f.Hit[i]) > tolMean {
				t.Errorf("%s: %d entries: mean over seeds %.3f, flash-moe %.2f (tolerance %.3f)", m, f.Sizes[i], all[i], f.Hit[i], tolMean)
			}
		}
		t.Logf("%s mean over seeds 1-6: %.3f", m, all)
	}
}

// TestFitOtherFigures: the per-layer overlap range lies around
// flash-moe's 8–34%, and layers are uncorrelated.
func TestFitOtherFigures(t *testing.T) {
	f := FlashMoE
	for _, m := range Models {
		tr, _ := Generate(Options{Layers: f.Layers, Experts: f.Experts, K: f.K, Tokens: f.Tokens, Seed: 1, Params: Fitted[m]})
		lo, avg, hi := Range(Overlap(tr, f.Tokens))
		if lo < f.OverlapLo-0.05 || hi > f.OverlapHi+0.05 || math.Abs(avg-(f.OverlapLo+f.OverlapHi)/2) > 0.04 {
			t.Errorf("%s: overlap %.3f-%.3f mean %.3f, flash-moe %.2f-%.2f", m, lo, hi, avg, f.OverlapLo, f.OverlapHi)
		}
		if c := CrossLayer(tr, f.Tokens); math.Abs(c) > 0.03 {
			t.Errorf("%s: cross-layer correlation %.3f, want ≈ 0", m, c)
		}
	}
}

// TestFitImproves: Fit moves a detuned model toward flash-moe's curve.
func TestFitImproves(t *testing.T) {
	start := Fitted["mix"]
	start.Reuse, start.HotP = 0.1, 0.2
	seeds := []uint64{7}
	before := fitLoss(start, seeds)
	p, after, err := Fit(start, seeds, 20)
	if err != nil {
		t.Fatal(err)
	}
	if !(after < before/4) {
		t.Errorf("fit: loss %.2e → %.2e (%+v), want a fourfold drop", before, after, p)
	}
	if _, _, err := Fit(Params{Model: "gauss"}, seeds, 5); err == nil {
		t.Error("Fit of an unknown model: no error")
	}
}

// TestTopKPrefix: the top 4 of a K=10 trace is the K=4 trace of the same
// seed (ids exactly, weights renormalised).
func TestTopKPrefix(t *testing.T) {
	for _, m := range Models {
		o := Options{Layers: 5, Experts: 512, K: 4, Tokens: 300, Seed: 9, Params: Fitted[m]}
		a, _ := Generate(o)
		o.K = 10
		b, _ := Generate(o)
		b4, err := b.TopK(4)
		if err != nil {
			t.Fatal(err)
		}
		for i := range a.IDs {
			if a.IDs[i] != b4.IDs[i] {
				t.Fatalf("%s: entry %d: K=4 id %d, top 4 of K=10 %d", m, i, a.IDs[i], b4.IDs[i])
			}
			if math.Abs(float64(a.Weights[i]-b4.Weights[i])) > 1e-6 {
				t.Fatalf("%s: entry %d: K=4 weight %v, top 4 of K=10 %v", m, i, a.Weights[i], b4.Weights[i])
			}
		}
	}
}

// TestGenerateShape: ids distinct per (token, layer), weights sum to 1 in
// descending order, layers differ.
func TestGenerateShape(t *testing.T) {
	tr, err := Generate(Options{Layers: 3, Experts: 16, K: 4, Tokens: 50, Seed: 2, Params: Fitted["zipf"]})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.validate(); err != nil {
		t.Fatal(err)
	}
	for tk := 0; tk < tr.Tokens; tk++ {
		for l := 0; l < tr.Layers; l++ {
			_, w := tr.At(tk, l)
			var s float64
			for j := range w {
				s += float64(w[j])
				if j > 0 && w[j] > w[j-1] {
					t.Fatalf("token %d layer %d: weights %v not descending", tk, l, w)
				}
			}
			if math.Abs(s-1) > 1e-5 {
				t.Fatalf("token %d layer %d: weights sum to %v", tk, l, s)
			}
		}
	}
	if same := slicesEqual(tr.Stream(0), tr.Stream(1)); same {
		t.Error("layers 0 and 1 have the same stream")
	}
	for _, bad := range []Options{
		{Layers: 1, Experts: 16, K: 4, Tokens: 5, Params: Params{Model: "gauss"}},
		{Layers: 1, Experts: 8, K: 4, Tokens: 5, Params: Fitted["mix"]}, // hot set of 16 > 8 experts
		{Layers: 1, Experts: 16, K: 17, Tokens: 5, Params: Fitted["zipf"]},
		{Layers: 1, Experts: 16, K: 4, Tokens: 5, Params: Params{Model: "zipf", Reuse: 1}},
	} {
		if _, err := Generate(bad); err == nil {
			t.Errorf("Generate(%+v): no error", bad)
		}
	}
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
