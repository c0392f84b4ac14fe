package quant

import "math"

// ErrorBound is the guaranteed worst case of |dequantised - original| for
// every element of a group whose values lie in [lo, hi], quantised at bits
// by rule (directly, or by Requant from dequantised values in [lo, hi]).
// It bounds the exact difference, so float32 and float64 checks both pass.
// With R = hi-lo, M = max(|lo|, |hi|) and n = 2^bits-1:
//
//	bound = step + g*(M + 2R) + 2^-20*(M + R) + (n+1)*1e-7
//	RuleMinMax: step = R/(2n),  g = 2^-8
//	RuleSeed:   step = R/(2n),  g = 2^-7
//	RuleMLX:    step = R/(n+1), g = 2^-8
//	RuleLSQ:    as RuleMLX (enforced while fitting)
//
// step is the quantisation itself. Min/max spacing is off by at most half a
// step, R/(2n). MLX's rule is not: it stretches or shrinks the step so the
// larger-magnitude endpoint lands exactly on a level, and when the step
// shrinks the far endpoint can fall up to one MLX step, n/(n+1) of a
// min/max step, beyond the last level and be clipped. This happens for
// near-symmetric groups: [-1, 0.99] at 4 bits gets step 1/8 and 0.99
// dequantises to 0.875. So "half a step" is not a valid bound for MLX; R/(n+1)
// is, and is attained. The g term covers rounding scale and bias to bf16
// (relative error 2^-8; truncation in RuleSeed, 2^-7), which shifts the bias
// level by g*M and level k by at most k*g*|scale| <= g*2R. The 2^-20 term
// covers float32 arithmetic in quantising and dequantising, and the last
// term groups narrower than n*1e-7, where MLX's scale clamp takes over.
//
// It returns +Inf (no guarantee) for an unknown rule, unsupported bits, or a
// range that is not finite with lo <= hi.
func ErrorBound(rule Rule, bits int, lo, hi float32) float32 {
	if rule.check() != nil || (bits != 2 && bits != 4 && bits != 8) ||
		!(lo <= hi) || !finite(lo) || !finite(hi) {
		return float32(math.Inf(1))
	}
	n := float64(int(1)<<bits - 1)
	r := float64(hi) - float64(lo)
	m := max(math.Abs(float64(lo)), math.Abs(float64(hi)))
	var step, g float64
	switch rule {
	case RuleMinMax:
		step, g = r/(2*n), 0x1p-8
	case RuleSeed:
		step, g = r/(2*n), 0x1p-7
	default:
		step, g = r/(n+1), 0x1p-8
	}
	return float32(step + g*(m+2*r) + 0x1p-20*(m+r) + (n+1)*1e-7)
}
