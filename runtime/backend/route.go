package backend

import (
	"fmt"
	"math"
)

// Route is the Qwen3.5-MoE router on the host: softmax over logits, the k
// largest probabilities (ties go to the lower index, as torch.topk does on
// CPU for equal values in practice and as flash-moe's strict '>' does),
// renormalised to sum to 1. It writes the expert ids to idx and their
// weights to w (both length k), ordered by decreasing probability.
//
// The softmax is computed in float64: the renormalised weights equal
// exp(l_i-m)/Σ_topk exp(l_j-m), so the full softmax denominator cancels and
// only the selected logits matter.
func Route(logits []float32, k int, idx []int, w []float32) error {
	if k <= 0 || k > len(logits) {
		return fmt.Errorf("backend: route top-%d of %d experts", k, len(logits))
	}
	if len(idx) < k || len(w) < k {
		return fmt.Errorf("backend: route outputs hold %d ids and %d weights, need %d", len(idx), len(w), k)
	}
	// Insertion into a sorted top-k list; k is small (≤ 16 in practice).
	n := 0
	for i, l := range logits {
		if math.IsNaN(float64(l)) {
			return fmt.Errorf("backend: router logit %d is NaN", i)
		}
		if n == k && l <= logits[idx[k-1]] {
			continue
		}
		j := n
		if n < k {
			n++
		} else {
			j = k - 1
		}
		// Strict '>' keeps earlier (lower) indices ahead on ties.
		for j > 0 && l > logits[idx[j-1]] {
			idx[j] = idx[j-1]
			j--
		}
		idx[j] = i
	}
	m := float64(logits[idx[0]])
	var sum float64
	for j := 0; j < k; j++ {
		sum += math.Exp(float64(logits[idx[j]]) - m)
	}
	for j := 0; j < k; j++ {
		w[j] = float32(math.Exp(float64(logits[idx[j]])-m) / sum)
	}
	return nil
}
