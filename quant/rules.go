package quant

import (
	"errors"
	"fmt"
	"math"
)

// Rule chooses a group's scale and bias (and so its levels). The zero value
// is RuleMLX, the rule every stock MLX checkpoint was made with.
type Rule uint8

const (
	// RuleMLX is MLX's edge-exact affine rule: the endpoint with the larger
	// magnitude is represented exactly, and so is zero whenever it lies in
	// the group's range. Bit-exact with the reference fixtures.
	RuleMLX Rule = iota
	// RuleMinMax spreads the levels evenly from min to max (scale
	// (max-min)/n, bias min), rounds both to bf16 (nearest even) and assigns
	// levels with the rounded values, so stored and used parameters agree.
	RuleMinMax
	// RuleSeed is the seed project's min/max rule reproduced bug for bug: it
	// assigns levels with the unrounded scale and bias, then stores them
	// truncated to bf16. Only for reproducing old packs.
	RuleSeed
	// RuleLSQ fits scale and bias by least squares, alternating level
	// assignment with the 2x2 normal equations, starting from the best of
	// RuleMinMax, RuleMLX and two min/max grids shrunk about the group's
	// midpoint. It keeps whichever candidate has the lowest squared error
	// measured with the bf16-rounded parameters, so per group it is never
	// worse than RuleMinMax or RuleMLX, and it never picks one whose worst
	// element would break ErrorBound. Slowest rule, about 8 passes a group.
	RuleLSQ
)

var ruleNames = [...]string{RuleMLX: "mlx", RuleMinMax: "minmax", RuleSeed: "seed", RuleLSQ: "lsq"}

// Rules lists every rule, in declaration order.
var Rules = []Rule{RuleMLX, RuleMinMax, RuleSeed, RuleLSQ}

func (r Rule) String() string {
	if int(r) < len(ruleNames) {
		return ruleNames[r]
	}
	return fmt.Sprintf("Rule(%d)", uint8(r))
}

// ParseRule maps a rule's String form back to the rule.
func ParseRule(s string) (Rule, error) {
	for i, name := range ruleNames {
		if name == s {
			return Rule(i), nil
		}
	}
	return 0, fmt.Errorf("quant: unknown rule %q (want mlx, minmax, seed or lsq)", s)
}

func (r Rule) check() error {
	if int(r) >= len(ruleNames) {
		return fmt.Errorf("quant: unknown rule %d", uint8(r))
	}
	return nil
}

var (
	errNonFinite = errors.New("non-finite value")
	errOverflow  = errors.New("scale, bias or a dequantised level overflows")
)

// groupRange returns the group's min and max, or an error if any value is
// NaN or infinite. Four independent lanes hide the latency of the builtin
// min/max (which propagate NaN, so one check at the end catches any NaN).
func groupRange(x []float32) (lo, hi float32, err error) {
	if len(x) < 4 || len(x)%4 != 0 {
		lo, hi = x[0], x[0]
		for _, v := range x {
			lo, hi = min(lo, v), max(hi, v)
		}
	} else {
		l0, l1, l2, l3 := x[0], x[1], x[2], x[3]
		h0, h1, h2, h3 := l0, l1, l2, l3
		for i := 4; i < len(x); i += 4 {
			v := x[i : i+4 : i+4]
			l0, h0 = min(l0, v[0]), max(h0, v[0])
			l1, h1 = min(l1, v[1]), max(h1, v[1])
			l2, h2 = min(l2, v[2]), max(h2, v[2])
			l3, h3 = min(l3, v[3]), max(h3, v[3])
		}
		lo, hi = min(l0, l1, l2, l3), max(h0, h1, h2, h3)
	}
	if !finite(lo) || !finite(hi) {
		return 0, 0, errNonFinite
	}
	return lo, hi, nil
}

func finite(f float32) bool { return f-f == 0 }

// params is one candidate quantisation of a group: the bf16 scale and bias
// to store and the float32 scale and bias to assign levels with. Only
// RuleSeed and a zero scale make the two differ.
type params struct {
	s16, b16 uint16
	as, ab   float32
}

func rounded(s16, b16 uint16) params {
	p := params{s16: s16, b16: b16, as: BF16ToF32(s16), ab: BF16ToF32(b16)}
	if p.as == 0 {
		// A zero step makes every level dequantise to the bias; dividing
		// by one instead of zero just keeps the levels finite.
		p.as = 1
	}
	return p
}

// ok reports whether the stored scale and bias, and every level they
// dequantise to (the extremes suffice: levels are monotonic in q), are
// finite. Only groups with values near float32's limit can fail.
func (p params) ok(nf float32) bool {
	s, b := BF16ToF32(p.s16), BF16ToF32(p.b16)
	top := float32(nf * s)
	return finite(s) && finite(b) && finite(top) && finite(float32(top+b))
}

// mlxParams is the reference rule, in float32 step for step:
//
//	scale = max((wmax-wmin)/n, 1e-7), negated unless |wmin| > |wmax|
//	edge  = wmin if |wmin| > |wmax| else wmax
//	q0    = round(edge/scale)
//	scale = edge/q0 and bias = edge, or bias = 0 if q0 == 0
//	scale, bias rounded to bf16
func mlxParams(lo, hi float32, n int) params {
	scale := float32(hi-lo) / float32(n)
	if scale < 1e-7 { // float32(1e-7), as torch.clamp casts its bound
		scale = 1e-7
	}
	edge := lo
	if !(abs32(lo) > abs32(hi)) {
		scale, edge = -scale, hi
	}
	// edge/scale can be far beyond 2^23 when the clamp kicked in, so round
	// through float64, which is exact for every float32.
	q0 := float32(math.RoundToEven(float64(edge / scale)))
	bias := float32(0)
	if q0 != 0 {
		scale, bias = edge/q0, edge
	}
	// No zero-scale substitution here: the reference divides by whatever
	// the scale became (a signed zero when edge/scale overflowed to
	// infinity), and the levels must match it even then.
	s16, b16 := F32ToBF16(scale), F32ToBF16(bias)
	return params{s16: s16, b16: b16, as: BF16ToF32(s16), ab: BF16ToF32(b16)}
}

func minMaxParams(lo, hi float32, n int) params {
	return rounded(F32ToBF16(float32(hi-lo)/float32(n)), F32ToBF16(lo))
}

func seedParams(lo, hi float32, n int) params {
	s := float32(hi-lo) / float32(n)
	p := params{s16: bf16Trunc(s), b16: bf16Trunc(lo), as: s, ab: lo}
	if s == 0 {
		p.as = 1
	}
	return p
}

// quantizeGroup picks the group's parameters by rule, packs its levels into
// out and returns the bf16 scale and bias.
func quantizeGroup(rule Rule, x []float32, bits int, out []uint32) (s16, b16 uint16, err error) {
	lo, hi, err := groupRange(x)
	if err != nil {
		return 0, 0, err
	}
	n := 1<<bits - 1
	var p params
	switch rule {
	case RuleMLX:
		p = mlxParams(lo, hi, n)
	case RuleMinMax:
		p = minMaxParams(lo, hi, n)
	case RuleSeed:
		p = seedParams(lo, hi, n)
	case RuleLSQ:
		p = lsqParams(x, lo, hi, bits)
	}
	if !p.ok(float32(n)) {
		return 0, 0, errOverflow
	}
	packGroup(x, p.as, p.ab, bits, out)
	return p.s16, p.b16, nil
}

func abs32(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ (1 << 31)) }
