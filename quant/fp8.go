package quant

import (
	"fmt"
	"math"
)

// DTypeF8E4M3 is safetensors' name for torch.float8_e4m3fn, the weight type of block-scaled FP8
// checkpoints (DeepSeek-V3/R1, Kimi-K2, Qwen's -FP8 releases).
const DTypeF8E4M3 = "F8_E4M3"

// E4M3ToF32 decodes one float8_e4m3fn code: a sign bit, 4 exponent bits (bias 7) and 3 mantissa
// bits; exponent 0 is subnormal (m·2^-9). The "fn" variant is finite: it has no infinities, and
// only S.1111.111 (0x7f, 0xff) is NaN, which leaves 448 as the largest value. Every code is exact
// in float32.
func E4M3ToF32(c byte) float32 { return e4m3Table[c] }

// E4M3IsNaN reports whether c is one of the two NaN codes.
func E4M3IsNaN(c byte) bool { return c&0x7f == 0x7f }

var e4m3Table = func() (t [256]float32) {
	for c := range t {
		t[c] = e4m3Decode(byte(c))
	}
	return t
}()

func e4m3Decode(c byte) float32 {
	if E4M3IsNaN(c) {
		return float32(math.NaN())
	}
	exp := int(c>>3) & 0xf
	man := float32(c & 7)
	v := man * 0x1p-9
	if exp > 0 {
		v = (8 + man) * float32(math.Ldexp(1, exp-10))
	}
	if c&0x80 != 0 {
		v = -v // -0 for 0x80, as torch decodes it
	}
	return v
}

// DequantFP8Row decodes one row of a block-scaled FP8 matrix into dst:
// dst[j] = E4M3ToF32(codes[j]) * scales[j/block], one float32 multiply rounded once, which is
// what torch's `q.float() * scale_inv` (and so transformers' and DeepSeek's dequantisation)
// computes. scales are the row's tile row, ceil(len(codes)/block) of them: the last tile may be
// partial. A NaN code comes out as NaN; callers reject the tensor.
func DequantFP8Row(dst []float32, codes []byte, scales []float32, block int) error {
	if len(dst) != len(codes) {
		return fmt.Errorf("quant: FP8 row of %d codes into %d floats", len(codes), len(dst))
	}
	if block <= 0 || len(scales) != (len(codes)+block-1)/block {
		return fmt.Errorf("quant: FP8 row of %d codes needs %d scales for block %d, got %d", len(codes), (len(codes)+max(block, 1)-1)/max(block, 1), block, len(scales))
	}
	for t, s := range scales {
		lo := t * block
		hi := min(lo+block, len(codes))
		for j := lo; j < hi; j++ {
			dst[j] = float32(e4m3Table[codes[j]] * s)
		}
	}
	return nil
}
