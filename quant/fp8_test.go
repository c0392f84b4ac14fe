package quant

import (
	"math"
	"math/rand"
	"testing"
)

// e4m3Ref decodes a float8_e4m3fn code in float64 from the OCP FP8 definition, written
// independently of the table: value = (-1)^s · 2^(e-7) · (1 + m/8), subnormals 2^-6 · m/8.
func e4m3Ref(c byte) float64 {
	s, e, m := c>>7, int(c>>3&0xf), float64(c&7)
	if e == 15 && m == 7 {
		return math.NaN()
	}
	v := math.Pow(2, -6) * m / 8
	if e != 0 {
		v = math.Pow(2, float64(e-7)) * (1 + m/8)
	}
	if s == 1 {
		v = math.Copysign(v, -1)
	}
	return v
}

func TestE4M3AllCodes(t *testing.T) {
	nans := 0
	for c := 0; c < 256; c++ {
		got, want := E4M3ToF32(byte(c)), e4m3Ref(byte(c))
		if math.IsNaN(want) {
			nans++
			if !math.IsNaN(float64(got)) || !E4M3IsNaN(byte(c)) {
				t.Errorf("code %#02x: got %v (IsNaN %v), want NaN", c, got, E4M3IsNaN(byte(c)))
			}
			continue
		}
		if E4M3IsNaN(byte(c)) {
			t.Errorf("code %#02x (%v) reported NaN", c, want)
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Errorf("code %#02x: got %v, want %v", c, got, want)
		}
		if math.IsInf(float64(got), 0) {
			t.Errorf("code %#02x decodes to %v: float8_e4m3fn has no infinities", c, got)
		}
	}
	if nans != 2 {
		t.Errorf("%d NaN codes, want 2 (0x7f, 0xff)", nans)
	}
	// Landmarks of the format, as torch.finfo(torch.float8_e4m3fn) states them.
	for _, k := range []struct {
		c    byte
		want float32
	}{{0x7e, 448}, {0xfe, -448}, {0x01, 0x1p-9}, {0x08, 0x1p-6}, {0x38, 1}, {0x00, 0}} {
		if got := E4M3ToF32(k.c); got != k.want {
			t.Errorf("code %#02x: got %v, want %v", k.c, got, k.want)
		}
	}
	if !math.Signbit(float64(E4M3ToF32(0x80))) {
		t.Error("code 0x80 is not -0")
	}
}

// TestDequantFP8RowPartialTile checks every element, tile edges included, against the float64
// product rounded once to float32 (the product of a 4-bit and a 24-bit significand is exact in
// float64, so float32(x) is the correctly rounded float32 product).
func TestDequantFP8RowPartialTile(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for _, n := range []int{1, 7, 32, 33, 100, 128, 130} {
		for _, block := range []int{1, 16, 32, 128} {
			codes := make([]byte, n)
			for i := range codes {
				codes[i] = byte(r.Intn(256))
				if E4M3IsNaN(codes[i]) {
					codes[i] = 0x3a
				}
			}
			scales := make([]float32, (n+block-1)/block)
			for i := range scales {
				scales[i] = float32(r.ExpFloat64() * 1e-3)
			}
			dst := make([]float32, n)
			if err := DequantFP8Row(dst, codes, scales, block); err != nil {
				t.Fatal(err)
			}
			for j, c := range codes {
				want := float32(e4m3Ref(c) * float64(scales[j/block]))
				if dst[j] != want {
					t.Fatalf("n %d block %d element %d: got %v, want %v", n, block, j, dst[j], want)
				}
			}
		}
	}
}

func TestDequantFP8RowErrors(t *testing.T) {
	dst := make([]float32, 33)
	if err := DequantFP8Row(dst, make([]byte, 33), make([]float32, 1), 32); err == nil {
		t.Error("33 codes in tiles of 32 accepted 1 scale (a partial edge tile needs its own)")
	}
	if err := DequantFP8Row(dst, make([]byte, 32), make([]float32, 1), 32); err == nil {
		t.Error("a destination of the wrong length was accepted")
	}
	if err := DequantFP8Row(dst, make([]byte, 33), nil, 0); err == nil {
		t.Error("block 0 was accepted")
	}
	codes := make([]byte, 33)
	codes[5] = 0xff
	if err := DequantFP8Row(dst, codes, []float32{1, 1}, 32); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(float64(dst[5])) {
		t.Errorf("NaN code decoded to %v", dst[5])
	}
}
