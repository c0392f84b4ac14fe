package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

// checkBound quantises src (rows of cols) with rule and fails on any element
// beyond ErrorBound of its group's range; it returns the largest ratio of
// error to bound seen.
func checkBound(t *testing.T, rule Rule, src []float32, cols, bits, group int) float64 {
	t.Helper()
	m := mustMatrix(t, len(src)/cols, cols, bits, group)
	if err := QuantizeWith(rule, m, src); err != nil {
		t.Fatal(err)
	}
	back := make([]float32, len(src))
	Dequantize(back, m)
	worst := 0.0
	for g := 0; g < len(src); g += group {
		lo, hi, _ := groupRange(src[g : g+group])
		bound := ErrorBound(rule, bits, lo, hi)
		for i := g; i < g+group; i++ {
			// Judged on the exact difference, which float64 holds.
			e := math.Abs(float64(back[i]) - float64(src[i]))
			if e > float64(bound) {
				t.Fatalf("%s bits %d group %d: element %d = %g dequantised to %g, error %g > bound %g (range [%g, %g])",
					rule, bits, group, i, src[i], back[i], e, bound, lo, hi)
			}
			if bound > 0 {
				worst = max(worst, e/float64(bound))
			}
		}
	}
	return worst
}

// TestErrorBound: every element of quantised random and adversarial
// matrices, for every rule, bit width and group size, is within ErrorBound.
func TestErrorBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, group := range []int{32, 64, 128} {
		var src []float32
		for _, g := range trickyGroups(rng, group) {
			src = append(src, g...)
		}
		// Near-symmetric groups, the MLX rule's worst case, at many scales.
		for range 300 {
			a := float32(math.Exp(rng.NormFloat64() * 4))
			f := float32(0.9 + 0.1*rng.Float64())
			for i := range group {
				switch i {
				case 0:
					src = append(src, -a)
				case 1:
					src = append(src, a*f)
				default:
					src = append(src, a*(2*float32(rng.Float64())-1))
				}
			}
		}
		for len(src)%1024 != 0 {
			src = append(src, float32(rng.NormFloat64()))
		}
		for _, bits := range []int{2, 4, 8} {
			for _, rule := range Rules {
				r := checkBound(t, rule, src, 1024, bits, group)
				if testing.Verbose() {
					t.Logf("%-6s bits %d group %3d: worst error / bound = %.3f", rule, bits, group, r)
				}
			}
		}
	}
}

// TestMLXBoundIsAttained shows why the MLX bound is R/(n+1) and not half a
// step: [-1, 0.99] at 4 bits gets scale 1/8 and clips 0.99 to 0.875.
func TestMLXBoundIsAttained(t *testing.T) {
	w := make([]float32, 64)
	for i := range w {
		w[i] = []float32{-1, 0.99}[i%2]
	}
	p, s, b := make([]uint32, 8), make([]uint16, 1), make([]uint16, 1)
	if err := QuantizeRow(w, 4, 64, p, s, b); err != nil {
		t.Fatal(err)
	}
	back := make([]float32, 64)
	DequantizeRow(p, s, b, 4, 64, back)
	scale := BF16ToF32(s[0])
	if scale != 0.125 || back[1] != 0.875 {
		t.Fatalf("scale %g, 0.99 -> %g; want 0.125 and 0.875", scale, back[1])
	}
	e := abs32(back[1] - w[1])
	if e <= scale/2 {
		t.Errorf("error %g within half a step %g: the example no longer shows clipping", e, scale/2)
	}
	if bound := ErrorBound(RuleMLX, 4, -1, 0.99); e > bound || e < 0.9*(1.99/16) {
		t.Errorf("error %g, bound %g: the bound's main term R/(n+1) = %g should be nearly attained", e, bound, 1.99/16)
	}
}

// TestRequantBound: |deq2 - deq4| <= ErrorBound(rule, 2, range of the
// dequantised 4-bit group) for every element and rule.
func TestRequantBound(t *testing.T) {
	for _, group := range []int{32, 64, 128} {
		m4 := random4Bit(t, uint64(100+group), 16, 1024, group)
		deq4 := make([]float32, 16*1024)
		Dequantize(deq4, m4)
		for _, rule := range Rules {
			m2 := mustMatrix(t, 16, 1024, 2, group)
			if err := Requant(rule, m2, m4); err != nil {
				t.Fatal(err)
			}
			deq2 := make([]float32, len(deq4))
			Dequantize(deq2, m2)
			for g := 0; g < len(deq4); g += group {
				lo, hi, _ := groupRange(deq4[g : g+group])
				bound := ErrorBound(rule, 2, lo, hi)
				for i := g; i < g+group; i++ {
					if e := math.Abs(float64(deq2[i]) - float64(deq4[i])); e > float64(bound) {
						t.Fatalf("%s group %d element %d: |%g - %g| = %g > %g", rule, group, i, deq2[i], deq4[i], e, bound)
					}
				}
			}
		}
	}
}

func TestErrorBoundRejects(t *testing.T) {
	inf := float32(math.Inf(1))
	for _, c := range []struct {
		rule   Rule
		bits   int
		lo, hi float32
	}{{RuleMLX, 3, 0, 1}, {RuleMLX, -1, 0, 1}, {Rule(9), 4, 0, 1}, {RuleLSQ, 4, 1, 0}, {RuleSeed, 2, float32(math.NaN()), 1}, {RuleMinMax, 2, 0, inf}} {
		if got := ErrorBound(c.rule, c.bits, c.lo, c.hi); got != inf {
			t.Errorf("ErrorBound(%v, %d, %g, %g) = %g, want +Inf", c.rule, c.bits, c.lo, c.hi, got)
		}
	}
}
