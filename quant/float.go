package quant

import "math"

// BF16ToF32 widens a bfloat16 bit pattern; it is exact for every input.
func BF16ToF32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// F32ToBF16 narrows to bfloat16 with round-to-nearest-even, matching torch's
// .to(torch.bfloat16) for every non-NaN input (overflow rounds to infinity).
// NaNs stay NaN with their sign and top payload bits; a NaN whose payload
// lives only in the discarded low bits gets the quiet bit so it cannot turn
// into an infinity. This makes BF16 -> F32 -> BF16 the identity on all 65536
// patterns, where torch would canonicalise NaNs to 0x7FC0.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		h := uint16(b >> 16)
		if h&0x7f == 0 {
			h |= 0x40
		}
		return h
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// bf16Trunc is the seed packer's (buggy) narrowing: drop the low 16 bits.
// Kept only so RuleSeed reproduces the seed's output exactly.
func bf16Trunc(f float32) uint16 {
	return uint16(math.Float32bits(f) >> 16)
}

// F16ToF32 widens an IEEE 754 binary16 bit pattern; it is exact for every
// input, including subnormals, infinities and NaN payloads.
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch exp {
	case 0:
		// Zero or subnormal: man * 2^-24, exact in float32.
		f := float32(man) * 0x1p-24
		return math.Float32frombits(math.Float32bits(f) | sign)
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	default:
		return math.Float32frombits(sign | (exp+(127-15))<<23 | man<<13)
	}
}

// F32ToF16 narrows to IEEE 754 binary16 with round-to-nearest-even, producing
// subnormals and infinities where IEEE does. NaNs keep sign and the top ten
// payload bits, quieted if those are all zero (see F32ToBF16).
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	abs := b & 0x7fffffff
	switch {
	case abs > 0x7f800000:
		m := uint16(abs>>13) & 0x3ff
		if m == 0 {
			m = 0x200
		}
		return sign | 0x7c00 | m
	case abs >= 0x477ff000:
		// 65520 is the midpoint between 65504 (odd mantissa) and 2^16, so
		// ties and everything above round to infinity.
		return sign | 0x7c00
	case abs >= 0x38800000:
		// Normal half: rebias the exponent and round the 13 dropped bits to
		// nearest even; a mantissa carry correctly bumps the exponent.
		v := abs - (127-15)<<23
		v += 0xfff + (v>>13)&1
		return sign | uint16(v>>13)
	default:
		// Subnormal half (or zero): the result is RNE(|f| * 2^24) units of
		// 2^-24. The scaling is exact and adding 2^23 makes the float32 adder
		// do the rounding; a result of 1024 is the smallest normal, encoded
		// the same way.
		x := float32(math.Float32frombits(abs) * 0x1p24)
		m := math.Float32bits(float32(x+0x1p23)) - 0x4b000000
		return sign | uint16(m)
	}
}
