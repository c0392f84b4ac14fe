package model

import (
	"fmt"
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
)

// A router turns one token's router logits into its len(idx) experts and their weights.
type router func(logits []float32, idx []int, w []float32) error

// softmaxRoute is the softmax top-k router of the Qwen families: the k largest probabilities,
// renormalised to sum to 1 (renorm: Qwen3.5, Qwen3-MoE with norm_topk_prob) or as they are.
func softmaxRoute(renorm bool) router {
	return func(logits []float32, idx []int, w []float32) error {
		if err := backend.Route(logits, len(idx), idx, w); err != nil || renorm {
			return err
		}
		// The probabilities themselves: exp(l_i-m)/Σ_all exp(l_j-m), in float64.
		m := float64(logits[idx[0]])
		var all float64
		for _, l := range logits {
			all += math.Exp(float64(l) - m)
		}
		for j := range w {
			w[j] = float32(math.Exp(float64(logits[idx[j]])-m) / all)
		}
		return nil
	}
}

// sigmoidRoute is the router of GLM-4.5 and DeepSeek-V3 (transformers' DeepseekV3MoE
// route_tokens_to_experts): scores s = sigmoid(logits); the choice uses s + bias (the
// e_score_correction_bias), restricted to the topkGroup groups (of nGroup equal groups) whose
// two best choice scores sum highest — the other groups' experts are set to 0, as masked_fill
// does, not removed; the weights are the chosen experts' s, divided by their sum (+1e-20) when
// renorm, times scale.
func sigmoidRoute(bias []float32, nGroup, topkGroup int, renorm bool, scale float64) router {
	return func(logits []float32, idx []int, w []float32) error {
		E, k := len(logits), len(idx)
		if len(bias) != E || nGroup <= 0 || E%nGroup != 0 || topkGroup <= 0 || topkGroup > nGroup {
			return fmt.Errorf("router: %d logits, %d biases, %d groups (top %d)", E, len(bias), nGroup, topkGroup)
		}
		if k <= 0 || k > E || len(w) < k {
			return fmt.Errorf("router: top-%d of %d experts", k, E)
		}
		s := make([]float64, E)
		choice := make([]float64, E)
		for i, l := range logits {
			if math.IsNaN(float64(l)) {
				return fmt.Errorf("router logit %d is NaN", i)
			}
			s[i] = 1 / (1 + math.Exp(-float64(l)))
			choice[i] = s[i] + float64(bias[i])
		}
		if nGroup > 1 {
			per := E / nGroup
			gs := make([]float64, nGroup)
			two := make([]int, 2)
			for g := range gs {
				backend.TopK(choice[g*per:(g+1)*per], two)
				gs[g] = choice[g*per+two[0]] + choice[g*per+two[1]]
			}
			keep := make([]int, topkGroup)
			backend.TopK(gs, keep)
			kept := make([]bool, nGroup)
			for _, g := range keep {
				kept[g] = true
			}
			for i := range choice {
				if !kept[i/per] {
					choice[i] = 0
				}
			}
		}
		backend.TopK(choice, idx[:k])
		var sum float64
		for _, e := range idx[:k] {
			sum += s[e]
		}
		for j, e := range idx[:k] {
			v := s[e]
			if renorm {
				v /= sum + 1e-20
			}
			w[j] = float32(v * scale)
		}
		return nil
	}
}
