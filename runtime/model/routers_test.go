package model

import (
	"math"
	"slices"
	"testing"
)

// logit is the inverse of the sigmoid, for writing router cases by score.
func logit(s float64) float32 { return float32(math.Log(s / (1 - s))) }

func TestSoftmaxRouteWithoutRenorm(t *testing.T) {
	lg := []float32{1, 3, 2, 0}
	idx, w := make([]int, 2), make([]float32, 2)
	if err := softmaxRoute(false)(lg, idx, w); err != nil {
		t.Fatal(err)
	}
	sum := math.E + math.Exp(3) + math.Exp(2) + 1
	want := []float64{math.Exp(3) / sum, math.Exp(2) / sum}
	if !slices.Equal(idx, []int{1, 2}) || math.Abs(float64(w[0])-want[0]) > 1e-7 || math.Abs(float64(w[1])-want[1]) > 1e-7 {
		t.Fatalf("got %v %v, want [1 2] %v", idx, w, want)
	}
	// Renormalised, the same two sum to 1.
	if err := softmaxRoute(true)(lg, idx, w); err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(w[0]+w[1])-1) > 1e-6 {
		t.Fatalf("renormalised weights %v", w)
	}
}

// TestSigmoidRouteBiasChoosesOnly: the correction bias changes which expert
// wins, but the weight is the winner's own sigmoid score (× scale).
func TestSigmoidRouteBiasChoosesOnly(t *testing.T) {
	lg := []float32{logit(0.6), logit(0.5), logit(0.4)}
	idx, w := make([]int, 1), make([]float32, 1)
	if err := sigmoidRoute([]float32{0, 0.2, 0}, 1, 1, false, 2)(lg, idx, w); err != nil {
		t.Fatal(err)
	}
	if idx[0] != 1 || math.Abs(float64(w[0])-1.0) > 1e-6 {
		t.Fatalf("got expert %d weight %v, want expert 1 weight 0.5·2", idx[0], w[0])
	}
}

// TestSigmoidRouteGroups: with two groups of two and one group kept, the
// group whose two best scores sum highest ({2, 3}: 1.5 against 1.0) wins,
// though expert 0 alone scores best; the weights are renormalised over the
// chosen experts and scaled.
func TestSigmoidRouteGroups(t *testing.T) {
	s := []float64{0.9, 0.1, 0.8, 0.7}
	lg := make([]float32, len(s))
	for i, v := range s {
		lg[i] = logit(v)
	}
	idx, w := make([]int, 2), make([]float32, 2)
	if err := sigmoidRoute(make([]float32, 4), 2, 1, true, 1.5)(lg, idx, w); err != nil {
		t.Fatal(err)
	}
	want := []float64{0.8 / 1.5 * 1.5, 0.7 / 1.5 * 1.5}
	if !slices.Equal(idx, []int{2, 3}) || math.Abs(float64(w[0])-want[0]) > 1e-6 || math.Abs(float64(w[1])-want[1]) > 1e-6 {
		t.Fatalf("got %v %v, want [2 3] %v", idx, w, want)
	}
	// Both groups kept: the plain top-2.
	if err := sigmoidRoute(make([]float32, 4), 2, 2, true, 1)(lg, idx, w); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(idx, []int{0, 2}) {
		t.Fatalf("both groups kept: %v, want [0 2]", idx)
	}
	lg[1] = float32(math.NaN())
	if err := sigmoidRoute(make([]float32, 4), 2, 1, true, 1)(lg, idx, w); err == nil {
		t.Fatal("a NaN logit routed")
	}
}
