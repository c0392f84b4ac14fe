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
	for i, l := range logits {
		if math.IsNaN(float64(l)) {
			return fmt.Errorf("backend: router logit %d is NaN", i)
		}
	}
	TopK(logits, idx[:k])
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

// TopK writes to out the indices of the len(out) largest values of v, in
// decreasing order; ties go to the lower index. It inserts into a sorted
// list, for the small k of routers (≤ 16 in practice). v holds no NaN.
func TopK[T float32 | float64](v []T, out []int) {
	n, k := 0, len(out)
	if k == 0 {
		return
	}
	// thr is the k-th largest so far once k are in: most values fall at or
	// below it, and this one compare is all they cost.
	var thr T
	for i, x := range v {
		if n == k && x <= thr {
			continue
		}
		j := n
		if n < k {
			n++
		} else {
			j = k - 1
		}
		// Strict '>' keeps earlier (lower) indices ahead on ties.
		for j > 0 && x > v[out[j-1]] {
			out[j] = out[j-1]
			j--
		}
		out[j] = i
		if n == k {
			thr = v[out[k-1]]
		}
	}
}
