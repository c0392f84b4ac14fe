package quant

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// random4Bit quantises a random matrix (Gaussian plus tricky groups) to 4
// bits with the MLX rule, the input the packer's requant command sees.
func random4Bit(t testing.TB, seed uint64, rows, cols, group int) *Matrix {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 11))
	var w []float32
	for _, g := range trickyGroups(rng, group) {
		w = append(w, g...)
	}
	for len(w) < rows*cols {
		w = append(w, float32(rng.NormFloat64()/64))
	}
	m := mustMatrix(t, rows, cols, 4, group)
	if err := Quantize(m, w[:rows*cols]); err != nil {
		t.Fatal(err)
	}
	return m
}

// refMinMax2 transcribes the seed's rule on a dequantised group: S2 =
// (max-min)/3, B2 = min, q = clip(RNE((f-B2)/S2safe), 0, 3). With round
// false it stores S2 and B2 truncated to bf16 (the seed); with round true it
// rounds them to nearest even first and quantises with the rounded values.
func refMinMax2(f []float32, round bool) (q []uint32, s, b uint16) {
	lo, hi := f[0], f[0]
	for _, v := range f {
		lo = float32(math.Min(float64(lo), float64(v)))
		hi = float32(math.Max(float64(hi), float64(v)))
	}
	s2, b2 := float32(float32(hi-lo)/3), lo
	if round {
		s, b = F32ToBF16(s2), F32ToBF16(b2)
		s2, b2 = BF16ToF32(s), BF16ToF32(b)
	} else {
		s, b = uint16(math.Float32bits(s2)>>16), uint16(math.Float32bits(b2)>>16)
	}
	if s2 == 0 {
		s2 = 1
	}
	for _, v := range f {
		r := math.RoundToEven(float64(float32(float32(v-b2) / s2)))
		q = append(q, uint32(math.Min(math.Max(r, 0), 3)))
	}
	return q, s, b
}

func TestRequantSeedAndMinMaxMatchReference(t *testing.T) {
	for _, group := range []int{32, 64, 128} {
		m4 := random4Bit(t, uint64(group), 8, 2048, group)
		deq4 := make([]float32, m4.Rows*m4.Cols)
		if err := Dequantize(deq4, m4); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			rule  Rule
			round bool
		}{{RuleSeed, false}, {RuleMinMax, true}} {
			m2 := mustMatrix(t, m4.Rows, m4.Cols, 2, group)
			if err := Requant(c.rule, m2, m4); err != nil {
				t.Fatal(err)
			}
			for g := range m2.Scales {
				f := deq4[g*group : (g+1)*group]
				q, s, b := refMinMax2(f, c.round)
				if m2.Scales[g] != s || m2.Biases[g] != b {
					t.Fatalf("%s group %d: scale/bias %#04x/%#04x, reference %#04x/%#04x", c.rule, g, m2.Scales[g], m2.Biases[g], s, b)
				}
				row, col := g*group/m2.Cols, g*group%m2.Cols
				p, _, _ := m2.row(row)
				for i := range q {
					if got := unpack(p, 2, col+i); got != q[i] {
						t.Fatalf("%s group %d element %d: level %d, reference %d", c.rule, g, i, got, q[i])
					}
				}
			}
		}
	}
}

// TestRequantMLXIsQuantizeOfDequant: requantising must be exactly the MLX
// quantiser applied to the runtime's dequantised values.
func TestRequantMLXIsQuantizeOfDequant(t *testing.T) {
	m4 := random4Bit(t, 1, 4, 1024, 64)
	deq4 := make([]float32, 4*1024)
	Dequantize(deq4, m4)
	want := mustMatrix(t, 4, 1024, 2, 64)
	if err := Quantize(want, deq4); err != nil {
		t.Fatal(err)
	}
	got := mustMatrix(t, 4, 1024, 2, 64)
	for r := range 4 {
		p4, s4, b4 := m4.row(r)
		p2, s2, b2 := got.row(r)
		if err := Requant4to2(RuleMLX, 64, p4, s4, b4, p2, s2, b2); err != nil {
			t.Fatal(err)
		}
	}
	if !equalMatrix(got, want) {
		t.Error("Requant4to2(RuleMLX) differs from Quantize(Dequantize(4-bit)) at 2 bits")
	}
}

func equalMatrix(a, b *Matrix) bool {
	return slices.Equal(a.Weight, b.Weight) && slices.Equal(a.Scales, b.Scales) && slices.Equal(a.Biases, b.Biases)
}

// TestLSQNeverWorse checks the per-group promise: LSQ's squared error is at
// most that of both MinMax and MLX on every single group, for requantised
// and direct inputs at 2 and 4 bits.
func TestLSQNeverWorse(t *testing.T) {
	m4 := random4Bit(t, 2, 16, 1024, 64)
	deq4 := make([]float32, 16*1024)
	Dequantize(deq4, m4)
	rng := rand.New(rand.NewPCG(12, 13))
	heavy := make([]float32, len(deq4))
	for i := range heavy {
		heavy[i] = float32(rng.NormFloat64() / (0.2 + rng.Float64())) // heavier tails
	}
	better := 0
	for _, src := range [][]float32{deq4, heavy} {
		for _, bits := range []int{2, 4} {
			sse := map[Rule][]float64{}
			for _, rule := range []Rule{RuleMinMax, RuleMLX, RuleLSQ} {
				m := mustMatrix(t, 16, 1024, bits, 64)
				if err := QuantizeWith(rule, m, src); err != nil {
					t.Fatal(err)
				}
				back := make([]float32, len(src))
				Dequantize(back, m)
				for g := 0; g < len(src); g += 64 {
					var e float64
					for i := g; i < g+64; i++ {
						d := float64(back[i] - src[i])
						e += d * d
					}
					sse[rule] = append(sse[rule], e)
				}
			}
			for g, l := range sse[RuleLSQ] {
				if l > sse[RuleMinMax][g] || l > sse[RuleMLX][g] {
					t.Fatalf("bits %d group %d: lsq SSE %g > minmax %g or mlx %g", bits, g, l, sse[RuleMinMax][g], sse[RuleMLX][g])
				}
				if l < min(sse[RuleMinMax][g], sse[RuleMLX][g]) {
					better++
				}
			}
		}
	}
	if better == 0 {
		t.Error("lsq never improved on its starts")
	}
}

func TestRequantErrors(t *testing.T) {
	m4 := random4Bit(t, 3, 2, 128, 64)
	m2 := mustMatrix(t, 2, 128, 2, 64)
	p4, s4, b4 := m4.row(0)
	p2, s2, b2 := m2.row(0)
	bad := append([]uint16(nil), s4...)
	bad[1] = 0x7f80 // +Inf scale
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"rule", Requant4to2(Rule(7), 64, p4, s4, b4, p2, s2, b2), "unknown rule"},
		{"group", Requant4to2(RuleLSQ, 32, p4, s4, b4, p2, s2, b2), "2 scales and 2 biases for 4 groups (requant source)"},
		{"dst", Requant4to2(RuleLSQ, 64, p4, s4, b4, p2[:7], s2, b2), "(requant destination)"},
		{"inf", Requant4to2(RuleMinMax, 64, p4, bad, b4, p2, s2, b2), "group at column 64: non-finite"},
		{"shape", Requant(RuleMLX, mustMatrix(t, 1, 128, 2, 64), m4), "shapes and groups must match"},
		{"nil", Requant(RuleMLX, nil, m4), "quant: nil matrix (requant destination)"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, c.err, c.want)
		}
	}
}

func TestParseRule(t *testing.T) {
	for _, r := range Rules {
		got, err := ParseRule(r.String())
		if err != nil || got != r {
			t.Errorf("ParseRule(%q) = %v, %v", r.String(), got, err)
		}
	}
	if _, err := ParseRule("gptq"); err == nil {
		t.Error("ParseRule accepted an unknown rule")
	}
	if s := Rule(42).String(); s != "Rule(42)" {
		t.Errorf("Rule(42).String() = %q", s)
	}
}
