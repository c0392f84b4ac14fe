package quant

// ErrorBound is the largest |dequantised - original| that quantising a
// group whose values lie in [lo, hi] with rule at bits can produce, for any
// element. With R = hi-lo, M = max(|lo|, |hi|) and n = 2^bits-1 levels:
//
//	RuleMinMax  R/(2n)  + 2^-8*(M + 2R) + 2^-20*M + ...
//	RuleSeed    R/(2n)  + 2^-7*(M + 2R) + ...
//	RuleMLX     R/(n+1) + 2^-8*(M + 2R) + ...
//	RuleLSQ     as RuleMLX (enforced while fitting)
//
// The first term is the quantisation itself. Min/max spacing is off by at
// most half a step. MLX's rule is not: it moves the step so the larger
// endpoint lands exactly on a level, which can leave the far endpoint up to
// n/(n+1) of a min/max step (one full MLX step) beyond the last level,
// where it is clipped; this happens for near-symmetric groups, e.g.
// [-1, 0.99] at 4 bits has step 1/8 and clips 0.99 to 0.875. The second term
// covers the bf16 rounding (truncation for RuleSeed) of bias and scale,
// which moves the grid by at most 2^-8 of the bias plus n times 2^-8 of the
// scale; the third covers float32 arithmetic. Groups with R below n*1e-7 hit
// MLX's scale clamp, so an absolute (n+1)*1e-7 is added for every rule.
func ErrorBound(rule Rule, bits int, lo, hi float32) float32 {
	n := float64(int(1)<<bits - 1)
	r := float64(hi) - float64(lo)
	m := max(abs64(float64(lo)), abs64(float64(hi)))
	var step, grid float64
	switch rule {
	case RuleMinMax:
		step, grid = r/(2*n), 0x1p-8
	case RuleSeed:
		step, grid = r/(2*n), 0x1p-7
	default:
		step, grid = r/(n+1), 0x1p-8
	}
	return float32(step + grid*(m+2*r) + 0x1p-20*(m+r) + (n+1)*1e-7)
}

func abs64(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}
