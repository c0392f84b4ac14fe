package quant

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// refQuantize is the reference Python rule transcribed line by line, with
// no attempt at speed, to cross-check the packed implementation on inputs
// the fixture does not contain. It returns unpacked levels.
func refQuantize(w []float32, bits, group int) (q []uint32, scales, biases []uint16) {
	nbins := float32(int(1)<<bits - 1)
	for g := 0; g < len(w); g += group {
		grp := w[g : g+group]
		wmax, wmin := float32(math.Inf(-1)), float32(math.Inf(1))
		for _, v := range grp {
			if v > wmax {
				wmax = v
			}
			if v < wmin {
				wmin = v
			}
		}
		scale := float32(float32(wmax-wmin) / nbins)
		if scale < float32(1e-7) {
			scale = float32(1e-7)
		}
		side := math.Abs(float64(wmin)) > math.Abs(float64(wmax))
		if !side {
			scale = -scale
		}
		edge := wmax
		if side {
			edge = wmin
		}
		q0 := float32(math.RoundToEven(float64(float32(edge / scale))))
		bias := edge
		if q0 != 0 {
			scale = float32(edge / q0)
		} else {
			bias = 0
		}
		sb, bb := F32ToBF16(scale), F32ToBF16(bias)
		scales, biases = append(scales, sb), append(biases, bb)
		for _, v := range grp {
			r := math.RoundToEven(float64(float32(float32(v-BF16ToF32(bb)) / BF16ToF32(sb))))
			if math.IsNaN(r) { // 0/0 when the scale underflowed to zero: level 0
				r = 0
			}
			r = math.Min(math.Max(r, 0), float64(nbins))
			q = append(q, uint32(r))
		}
	}
	return q, scales, biases
}

// unpack extracts element i of a packed row without the fast paths.
func unpack(packed []uint32, bits, i int) uint32 {
	per := 32 / bits
	return packed[i/per] >> (bits * (i % per)) & (1<<bits - 1)
}

// trickyGroups returns groups built to hit every branch of the MLX rule:
// ties of |min| and |max|, q0 == 0, the 1e-7 clamp, exact .5 quotients,
// huge and tiny magnitudes.
func trickyGroups(rng *rand.Rand, group int) [][]float32 {
	gen := func(f func(i int) float32) []float32 {
		x := make([]float32, group)
		for i := range x {
			x[i] = f(i)
		}
		return x
	}
	gs := [][]float32{
		gen(func(int) float32 { return 0 }),
		gen(func(int) float32 { return 0.7 }),
		gen(func(int) float32 { return -3 }),
		gen(func(i int) float32 { return float32(i%31) / 2 }),        // exact half-level quotients
		gen(func(i int) float32 { return float32(i%16) - 7.5 }),      // |min| == |max|
		gen(func(i int) float32 { return []float32{-1, 0.99}[i%2] }), // clipped far end
		gen(func(i int) float32 { return 5 + float32(i%3)*1e-7 }),    // clamp with offset
		gen(func(i int) float32 { return float32(i%3) * 1e-8 }),      // clamp, q0 == 0
		gen(func(i int) float32 { return -float32(i%3) * 3e-8 }),
		gen(func(i int) float32 { return float32(rng.NormFloat64()) * 1e30 }),
		gen(func(i int) float32 { return float32(rng.NormFloat64()) * 1e-30 }),
		gen(func(i int) float32 { return float32(rng.NormFloat64()) * 1e-39 }), // subnormal
		gen(func(i int) float32 { return 100 + float32(rng.NormFloat64()) }),
		gen(func(i int) float32 { return -100 + float32(rng.NormFloat64())*1e-3 }),
		gen(func(i int) float32 { return BF16ToF32(F32ToBF16(float32(rng.NormFloat64()) / 16)) }),
	}
	for range 200 {
		s := math.Exp(rng.NormFloat64() * 3)
		gs = append(gs, gen(func(int) float32 { return float32(rng.NormFloat64() * s) }))
	}
	return gs
}

func TestQuantizeMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, bits := range []int{2, 4, 8} {
		for _, group := range []int{32, 64, 128} {
			var w []float32
			for _, g := range trickyGroups(rng, group) {
				w = append(w, g...)
			}
			packed := make([]uint32, RowWords(len(w), bits))
			scales := make([]uint16, RowGroups(len(w), group))
			biases := make([]uint16, len(scales))
			if err := QuantizeRow(w, bits, group, packed, scales, biases); err != nil {
				t.Fatal(err)
			}
			q, rs, rb := refQuantize(w, bits, group)
			for g := range scales {
				if scales[g] != rs[g] || biases[g] != rb[g] {
					t.Fatalf("bits %d group %d: group %d scale/bias %#04x/%#04x, reference %#04x/%#04x",
						bits, group, g, scales[g], biases[g], rs[g], rb[g])
				}
			}
			for i := range w {
				if got := unpack(packed, bits, i); got != q[i] {
					t.Fatalf("bits %d group %d: element %d (%g) level %d, reference %d", bits, group, i, w[i], got, q[i])
				}
			}
		}
	}
}

// TestPackLayout pins the LSB-first layout with a group whose levels are
// known: 0..15 repeating quantises (4-bit) with scale -1 and bias 15.
func TestPackLayout(t *testing.T) {
	w := make([]float32, 64)
	for i := range w {
		w[i] = float32(i % 16)
	}
	packed := make([]uint32, 8)
	s, b := make([]uint16, 1), make([]uint16, 1)
	if err := QuantizeRow(w, 4, 64, packed, s, b); err != nil {
		t.Fatal(err)
	}
	if BF16ToF32(s[0]) != -1 || BF16ToF32(b[0]) != 15 {
		t.Fatalf("scale %g bias %g, want -1 and 15", BF16ToF32(s[0]), BF16ToF32(b[0]))
	}
	// Element j has level 15 - j%16, nibble j%8 of word j/8.
	if packed[0] != 0x89abcdef || packed[1] != 0x01234567 {
		t.Errorf("words %#08x %#08x, want 0x89abcdef 0x01234567", packed[0], packed[1])
	}
	back := make([]float32, 64)
	if err := DequantizeRow(packed, s, b, 4, 64, back); err != nil {
		t.Fatal(err)
	}
	for i := range w {
		if back[i] != w[i] {
			t.Fatalf("element %d dequantised to %g, want %g", i, back[i], w[i])
		}
	}
}

func TestDequantizeMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, bits := range []int{2, 4, 8} {
		const cols, group = 256, 32
		packed := make([]uint32, RowWords(cols, bits))
		for i := range packed {
			packed[i] = rng.Uint32()
		}
		scales, biases := make([]uint16, cols/group), make([]uint16, cols/group)
		for i := range scales {
			scales[i] = F32ToBF16(float32(rng.NormFloat64()))
			biases[i] = F32ToBF16(float32(rng.NormFloat64()))
		}
		got := make([]float32, cols)
		if err := DequantizeRow(packed, scales, biases, bits, group, got); err != nil {
			t.Fatal(err)
		}
		for i := range got {
			s, b := BF16ToF32(scales[i/group]), BF16ToF32(biases[i/group])
			// float32 product, rounded, then float32 sum: float64 holds
			// both exactly before each explicit rounding.
			want := float32(float64(float32(float64(unpack(packed, bits, i))*float64(s))) + float64(b))
			if got[i] != want {
				t.Fatalf("bits %d element %d: %g, want %g", bits, i, got[i], want)
			}
		}
	}
}

func TestLayoutErrors(t *testing.T) {
	w := make([]float32, 128)
	p, s, b := make([]uint32, 16), make([]uint16, 2), make([]uint16, 2)
	nan := append([]float32(nil), w...)
	nan[70] = float32(math.NaN())
	inf := append([]float32(nil), w...)
	inf[3] = float32(math.Inf(1))
	huge := append([]float32(nil), w...)
	huge[0], huge[1] = -3e38, 3e38
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"bits", QuantizeRow(w, 3, 64, p, s, b), "unsupported bits 3"},
		{"group", QuantizeRow(w, 4, 48, p, s, b), "unsupported group size 48"},
		{"cols", QuantizeRow(w[:96], 4, 64, p, s, b), "96 is not divisible by group size 64"},
		{"empty", QuantizeRow(nil, 4, 64, p, s, b), "not positive"},
		{"words", QuantizeRow(w, 4, 64, p[:15], s, b), "15 packed words"},
		{"scales", QuantizeRow(w, 4, 64, p, s[:1], b), "1 scales and 2 biases"},
		{"nan", QuantizeRow(nan, 4, 64, p, s, b), "group at column 64: non-finite"},
		{"inf", QuantizeRow(inf, 4, 64, p, s, b), "group at column 0: non-finite"},
		{"overflow", QuantizeRow(huge, 4, 64, p, s, b), "overflows"},
		{"rule", QuantizeRowWith(Rule(9), w, 4, 64, p, s, b), "unknown rule"},
		{"dequant", DequantizeRow(p, s, b, 4, 64, w[:64]), "16 packed words for 64"},
		{"matrix", Quantize(&Matrix{Rows: 2, Cols: 128, Bits: 4, Group: 64}, w), "needs 32 words"},
		{"nil", Quantize(nil, w), "nil matrix"},
		{"src", Quantize(mustMatrix(t, 2, 128, 4, 64), w), "128 source values for a [2, 128]"},
		{"dst", Dequantize(w, mustMatrix(t, 2, 128, 4, 64)), "128 destination values"},
		{"rows", func() error { _, err := NewMatrix(0, 64, 4, 64); return err }(), "row count 0"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, c.err, c.want)
		}
	}
}

func mustMatrix(t testing.TB, rows, cols, bits, group int) *Matrix {
	t.Helper()
	m, err := NewMatrix(rows, cols, bits, group)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMatrixRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	const rows, cols = 3, 256
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	m := mustMatrix(t, rows, cols, 8, 128)
	if err := Quantize(m, w); err != nil {
		t.Fatal(err)
	}
	back := make([]float32, len(w))
	if err := Dequantize(back, m); err != nil {
		t.Fatal(err)
	}
	for r := range rows {
		// Row-wise calls must agree with the matrix calls.
		p, s, b := m.row(r)
		rowBack := make([]float32, cols)
		if err := DequantizeRow(p, s, b, 8, 128, rowBack); err != nil {
			t.Fatal(err)
		}
		for c := range cols {
			i := r*cols + c
			if rowBack[c] != back[i] {
				t.Fatalf("row %d col %d: row call %g, matrix call %g", r, c, rowBack[c], back[i])
			}
			lo, hi, _ := groupRange(w[r*cols+c/128*128 : r*cols+c/128*128+128])
			if d := abs32(back[i] - w[i]); d > ErrorBound(RuleMLX, 8, lo, hi) {
				t.Fatalf("row %d col %d: error %g beyond bound", r, c, d)
			}
		}
	}
}

func TestNoAllocs(t *testing.T) {
	w := make([]float32, 4096)
	for i := range w {
		w[i] = float32(math.Sin(float64(i)))
	}
	p4, s4, b4 := make([]uint32, 512), make([]uint16, 64), make([]uint16, 64)
	p2, s2, b2 := make([]uint32, 256), make([]uint16, 64), make([]uint16, 64)
	for _, rule := range Rules {
		if n := testing.AllocsPerRun(10, func() {
			QuantizeRowWith(rule, w, 4, 64, p4, s4, b4)
			DequantizeRow(p4, s4, b4, 4, 64, w)
			Requant4to2(rule, 64, p4, s4, b4, p2, s2, b2)
		}); n != 0 {
			t.Errorf("%s: %v allocations per row", rule, n)
		}
	}
}
