package quant

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func isNaN32(f float32) bool { return f != f }

func TestBF16RoundTripExhaustive(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		f := BF16ToF32(h)
		if got := F32ToBF16(f); got != h {
			t.Fatalf("bf16 %#04x -> %g -> %#04x", h, f, got)
		}
		if isNaN32(f) != (h&0x7fff > 0x7f80) {
			t.Fatalf("bf16 %#04x: NaN-ness not preserved (%g)", h, f)
		}
	}
}

func TestF16RoundTripExhaustive(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		f := F16ToF32(h)
		if got := F32ToF16(f); got != h {
			t.Fatalf("f16 %#04x -> %g -> %#04x", h, f, got)
		}
		// Independent value check: sign * mantissa * 2^exp from the fields.
		e, m := int(h>>10&0x1f), float64(h&0x3ff)
		var want float64
		switch e {
		case 0:
			want = m * 0x1p-24
		case 0x1f:
			want = math.Inf(1)
			if m != 0 {
				want = math.NaN()
			}
		default:
			want = (1 + m/1024) * math.Ldexp(1, e-15)
		}
		if h&0x8000 != 0 {
			want = -want
		}
		if math.IsNaN(want) != isNaN32(f) || (!math.IsNaN(want) && float64(f) != want) {
			t.Fatalf("f16 %#04x = %g, want %g", h, f, want)
		}
	}
}

// TestF16Values pins the special cases that a wrong branch boundary breaks.
func TestF16Values(t *testing.T) {
	cases := []struct {
		f    float32
		want uint16
	}{
		{0, 0}, {float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff},
		{65519.996, 0x7bff}, {65520, 0x7c00}, {1e9, 0x7c00}, {float32(math.Inf(-1)), 0xfc00},
		{0x1p-14, 0x0400}, {0x1p-24, 0x0001}, {0x1p-25, 0x0000}, {0x1.000002p-25, 0x0001},
		{0x3p-25, 0x0002}, {0x1ffcp-24 / 8, 0x0400}, // 0x3ff.8 units ties up to the smallest normal
		{float32(math.NaN()), 0x7e00},
	}
	for _, c := range cases {
		if got := F32ToF16(c.f); got != c.want {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", c.f, got, c.want)
		}
	}
	if got := F32ToBF16(math.Float32frombits(0x7f800001)); got&0x7fff <= 0x7f80 {
		t.Errorf("signalling NaN with low payload became %#04x, not a NaN", got)
	}
	if got := F32ToBF16(math.MaxFloat32); got != 0x7f80 {
		t.Errorf("F32ToBF16(MaxFloat32) = %#04x, want +Inf 0x7f80", got)
	}
	if got := F32ToF16(math.Float32frombits(0xff800001)); got&0x7fff <= 0x7c00 || got&0x8000 == 0 {
		t.Errorf("negative NaN became %#04x", got)
	}
}

// refRound narrows x to the nearest of the sorted finite values of a 16-bit
// format, ties to the even encoding, in float64. Values at or beyond the
// midpoint between the largest finite value and the next power of two (the
// "value" of infinity under IEEE rounding) give infinity.
type refFormat struct {
	vals []float64 // non-negative finite values, ascending
	encs []uint16  // their encodings
	inf  uint16
	next float64 // the value infinity stands for when rounding
}

func newRef(widen func(uint16) float32, signBit uint16) refFormat {
	var r refFormat
	for i := range int(signBit) {
		f := widen(uint16(i))
		if math.IsInf(float64(f), 0) {
			r.inf = uint16(i)
			continue
		}
		if isNaN32(f) {
			continue
		}
		r.vals = append(r.vals, float64(f))
		r.encs = append(r.encs, uint16(i))
	}
	top := r.vals[len(r.vals)-1]
	r.next = top + (top - r.vals[len(r.vals)-2])
	return r
}

func (r refFormat) round(x float64) uint16 {
	var sign uint16
	if math.Signbit(x) {
		sign, x = 0x8000, -x
	}
	if x >= r.next {
		return sign | r.inf
	}
	i := sort.SearchFloat64s(r.vals, x) // first value >= x
	if i == len(r.vals) {
		top := r.vals[i-1]
		if x-top < r.next-x || (x-top == r.next-x && r.encs[i-1]&1 == 0) {
			return sign | r.encs[i-1]
		}
		return sign | r.inf
	}
	if r.vals[i] == x || i == 0 {
		return sign | r.encs[i]
	}
	lo, hi := r.vals[i-1], r.vals[i]
	switch {
	case x-lo < hi-x:
		return sign | r.encs[i-1]
	case x-lo > hi-x:
		return sign | r.encs[i]
	case r.encs[i-1]&1 == 0:
		return sign | r.encs[i-1]
	default:
		return sign | r.encs[i]
	}
}

// TestRoundingAgainstFloat64 checks RNE on every midpoint between adjacent
// 16-bit values (exact in float32), one float32 ulp either side of it, and
// a million random bit patterns, against the float64 reference.
func TestRoundingAgainstFloat64(t *testing.T) {
	formats := []struct {
		name   string
		widen  func(uint16) float32
		narrow func(float32) uint16
	}{
		{"bf16", BF16ToF32, F32ToBF16},
		{"f16", F16ToF32, F32ToF16},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, f := range formats {
		ref := newRef(f.widen, 0x8000)
		check := func(x float32) {
			if isNaN32(x) {
				return
			}
			want := ref.round(float64(x))
			if got := f.narrow(x); got != want {
				t.Fatalf("%s: narrow(%g [%#08x]) = %#04x, want %#04x", f.name, x, math.Float32bits(x), got, want)
			}
		}
		vals := append(append([]float64(nil), ref.vals...), ref.next)
		ties := 0
		for i := 1; i < len(vals); i++ {
			mid := float32((vals[i-1] + vals[i]) / 2)
			if float64(mid) != (vals[i-1]+vals[i])/2 {
				t.Fatalf("%s: midpoint of %g and %g not exact in float32", f.name, vals[i-1], vals[i])
			}
			for _, x := range []float32{mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, float32(math.Inf(1)))} {
				check(x)
				check(-x)
			}
			ties++
		}
		for range 1_000_000 {
			check(math.Float32frombits(rng.Uint32()))
		}
		t.Logf("%s: %d midpoints (x3, both signs) and 1e6 random values match the float64 reference", f.name, ties)
	}
}
