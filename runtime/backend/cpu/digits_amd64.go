//go:build amd64 && !purego

package cpu

import (
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
)

// The 4-bit matvec on AVX-512 VNNI (isaVNNI): x as integers, the dot
// products by VPDPBUSD (64 byte products a instruction: the weights'
// unsigned nibbles against x's signed digits) in place of the float
// kernel's table lookups and multiplies (kQ4AVX512: ~31 vector ops for two
// groups, ~19 here).
//
// x in fixed point per group: with 2^(E−1) ≤ max|x| < 2^E over the group's
// 64 values, n = round(x·2^(22−E)), |n| < 2^22, carried as three balanced
// base-256 digits (int8: n = d0 + 2^8·d1 + 2^16·d2, |d2| ≤ 64). A value's
// error is at most 2^(E−23), half a step of a 23-bit grid on the group's
// largest value: float32's own rounding of that value. Each lane of a
// block sums 8 columns exactly in int32 (|Σ(q−8)·n| < 2^28): the digits'
// sums combined by shifts and adds, less 8·Σn (q centred on 8 as the float
// kernels centre it, so that the bias term (b+8s)·Σx cancels little), one
// rounding to float32, then times the group's scale·2^(E−22) (exact: a
// power of two) into the row's float32 sum. The error is that of the float
// kernels, |err| ≲ n·u·Σ|terms|, plus the grid's 2^−23 of each group's
// largest |x| times Σ|w| (TestDigitsAgainstFloat64).
//
// A block is two groups: the kernel loads a row's 64 bytes of them at
// once; lanes 0–7 hold the first group's bytes, 8–15 the second's. Per
// block x is staged as digitsStride bytes: the digits of the even columns
// (low nibbles) then of the odd ones (high nibbles), each 64 bytes a digit,
// byte 32h+b being column 2b (+1) of group h; then 16 float32 factors
// 2^(E−22) (lanes 0–7 the first group's, 8–15 the second's) and 16 int32
// lane sums 8·Σn.
//
// x with a NaN or an infinity, a group whose factor would be subnormal, or
// an odd number of groups goes to the float kernel, which computes what
// float32 arithmetic gives for them.

//go:noescape
func q4DigitsVNNI(w, s, b *byte, groups int, xd *byte, sx, y *float32, rows int)

// digitsStride is the bytes of x a block of two groups takes: 6 digit
// vectors, the factors and the centring sums.
const digitsStride = 6*64 + 64 + 64

// asmDigits is the VNNI 4-bit kernel, with the float kernel for the inputs
// it leaves to it.
type asmDigits struct {
	float *asmAffine
}

var kQ4VNNI = &asmDigits{float: kQ4AVX512}

// group64 marks a kernel for groups of 64 only (asmKernel).
func (*asmDigits) group64() {}

func (k *asmDigits) prep(w *backend.Weight, x []float32, T int, p *prepared) {
	C, ng := w.Cols, w.Groups()
	if ng%2 != 0 {
		k.float.prep(w, x, T, p)
		return
	}
	nb := ng / 2
	p.sx = p.reset(x, T*ng)
	p.ng = ng
	if cap(p.dbuf) < T*nb*digitsStride {
		p.dbuf = make([]byte, T*nb*digitsStride)
	}
	xd := p.dbuf[:T*nb*digitsStride]
	for t := 0; t < T; t++ {
		for blk := 0; blk < nb; blk++ {
			g := t*ng + 2*blk
			if !stageDigits((*[digitsStride]byte)(xd[(t*nb+blk)*digitsStride:]), x[t*C+128*blk:], p.sx[g:g+2]) {
				k.float.prep(w, x, T, p)
				return
			}
		}
	}
	p.xd = xd
}

// digitsMin is the bits of 2^−105, the least max|x| of a group whose factor
// 2^(E−22) is a normal float32.
const digitsMin = (127 - 105) << 23

// stageDigits writes one block's staging (the layout above) from its 128
// values of x, and the two groups' sums of x into sx: f·Σn, the sums of
// the values the digits carry (within the digits' error of Σx, and what
// the centring subtracts, so that it cancels exactly). It returns false,
// having written part of it, for a group that is not finite or whose
// factor would not be normal.
func stageDigits(d *[digitsStride]byte, x []float32, sx []float32) bool {
	for h := 0; h < 2; h++ {
		xs := (*[64]float32)(x[64*h:])
		var mb uint32 // max |x| as bits: the order of non-negative floats
		for _, v := range xs {
			mb = max(mb, math.Float32bits(v)&^(1<<31))
		}
		if mb >= 0x7f800000 || mb != 0 && mb < digitsMin {
			return false
		}
		// 2^(E−1) ≤ max|x| < 2^E, from its exponent field.
		E := int(mb>>23) - 126
		f, sh := math.Float32frombits(uint32(E-22+127)<<23), math.Float32frombits(uint32(22-E+127)<<23)
		if mb == 0 {
			f, sh = 0, 0
		}
		var lane [8]int32
		for c := 0; c < 64; c += 2 {
			i := 32*h + c/2 // the byte of the block's 64
			lo, hi := roundDigits(xs[c], sh), roundDigits(xs[c+1], sh)
			lane[c/8] += lo + hi
			putDigits(d, i, lo)
			putDigits(d, 3*64+i, hi)
		}
		var n int32
		for l := 0; l < 8; l++ {
			n += lane[l]
			putU32(d[6*64+4*(8*h+l):], math.Float32bits(f))
			putU32(d[7*64+4*(8*h+l):], uint32(8*lane[l]))
		}
		sx[h] = f * float32(n)
	}
	return true
}

// roundDigits is v·sh rounded to the nearest integer (|v·sh| < 2^22: the
// multiply by a power of two is exact, and adding 1.5·2^23 leaves the
// integer part in the mantissa, rounded to even).
func roundDigits(v, sh float32) int32 {
	const magic = 0x1.8p23
	return int32(float32(float32(v*sh)+magic) - magic)
}

// putDigits writes n's three balanced base-256 digits at d[o], d[o+64],
// d[o+128].
func putDigits(d *[digitsStride]byte, o int, n int32) {
	d0 := int32(int8(n))
	n1 := (n - d0) >> 8
	d1 := int32(int8(n1))
	d[o], d[o+64], d[o+128] = byte(d0), byte(d1), byte((n1-d1)>>8)
}

func putU32(b []byte, v uint32) { b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24) }

func (k *asmDigits) rows(w *backend.Weight, r0, r1 int, p *prepared, t int, y []float32) {
	if p.xd == nil {
		k.float.rows(w, r0, r1, p, t, y)
		return
	}
	if r1 <= r0 {
		return
	}
	ng := w.Groups()
	rb := w.RowBytes()
	xd := p.xd[t*(ng/2)*digitsStride:]
	q4DigitsVNNI(&w.Data[r0*rb], &w.Scales[2*r0*ng], &w.Biases[2*r0*ng], ng,
		&xd[0], &p.sx[t*ng], &y[r0], r1-r0)
}
