package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestRouteTokensParallel: a prompt's routing split over the cores picks
// the experts and weights token by token routing picks, and a bad logit's
// error names the earliest bad token, as in order.
func TestRouteTokensParallel(t *testing.T) {
	m := open(t, "hf", 16, 0, Options{})
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	E, K, T := m.Config.NumExperts, m.K, 3*routeParMin+5
	rng := rand.New(rand.NewPCG(3, 4))
	lg := make([]float32, T*E)
	for i := range lg {
		lg[i] = float32(rng.NormFloat64())
	}
	idx, w := make([]int, T*K), make([]float32, T*K)
	if err := s.routeTokens(lg, 0, T, idx, w); err != nil {
		t.Fatal(err)
	}
	wi, ww := make([]int, T*K), make([]float32, T*K)
	for tk := range T {
		if err := s.route(lg[tk*E:(tk+1)*E], 0, tk, wi[tk*K:(tk+1)*K], ww[tk*K:(tk+1)*K]); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(idx, wi) || !slices.Equal(w, ww) {
		t.Fatal("parallel routing differs from routing token by token")
	}
	lg[150*E+3], lg[90*E+7] = float32(math.NaN()), float32(math.NaN())
	err = s.routeTokens(lg, 0, T, idx, w)
	if err == nil || !strings.Contains(err.Error(), "token 90:") {
		t.Fatalf("NaN logits at tokens 90 and 150: error %v, want token 90's", err)
	}
}

// BenchmarkRouteTokens routes a 512-token prompt layer of Qwen3.5-397B's
// router shape (512 experts, K=10) on the host: in token order (the
// single-thread figure, 1.1 ms on the dev machine) and split over the
// cores, as moe does.
func BenchmarkRouteTokens(b *testing.B) {
	const T, E, K = 512, 512, 10
	m := &Model{K: K, layers: []layer{{route: softmaxRoute(true)}}}
	m.Config.NumExperts = E
	s := &Session{m: m}
	rng := rand.New(rand.NewPCG(1, 2))
	lg := make([]float32, T*E)
	for i := range lg {
		lg[i] = float32(rng.NormFloat64())
	}
	idx, w := make([]int, T*K), make([]float32, T*K)
	b.Run("ordered", func(b *testing.B) {
		for b.Loop() {
			for tk := range T {
				if err := s.route(lg[tk*E:(tk+1)*E], 0, tk, idx[tk*K:(tk+1)*K], w[tk*K:(tk+1)*K]); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("cores", func(b *testing.B) {
		for b.Loop() {
			if err := s.routeTokens(lg, 0, T, idx, w); err != nil {
				b.Fatal(err)
			}
		}
	})
}
