package backend

import (
	"math"
	"unsafe"
)

// FirstMax is the first index of the largest value (NaN never chosen past
// index 0; a NaN at 0 gives 0, as a running maximum starting there does).
// Four running maxima over interleaved lanes, each in registers, instead
// of one: the compare of one value no longer waits on the last update
// (runtime/model's BenchmarkSampleGreedy, 248k logits on dev-2c: 121 µs →
// 79). Each lane starts at (lg[0], 0) and keeps its first maximum; the
// lanes then agree on the largest value at the lowest index: the first
// maximum. The greedy sampler's and the CPU backend's ArgMax.
func FirstMax(lg []float32) int {
	b0, b1, b2, b3 := 0, 0, 0, 0
	v0 := lg[0]
	v1, v2, v3 := v0, v0, v0
	i := 1
	for ; i+4 <= len(lg); i += 4 {
		x := lg[i : i+4 : i+4]
		if x[0] > v0 {
			v0, b0 = x[0], i
		}
		if x[1] > v1 {
			v1, b1 = x[1], i+1
		}
		if x[2] > v2 {
			v2, b2 = x[2], i+2
		}
		if x[3] > v3 {
			v3, b3 = x[3], i+3
		}
	}
	for ; i < len(lg); i++ {
		if lg[i] > v0 {
			v0, b0 = lg[i], i
		}
	}
	best, bv := b0, v0
	for _, c := range [...]struct {
		b int
		v float32
	}{{b1, v1}, {b2, v2}, {b3, v3}} {
		if c.v > bv || c.v == bv && c.b < best {
			best, bv = c.b, c.v
		}
	}
	return best
}

// AllFinite reports whether no value is NaN or ±Inf (exponent bits all
// ones) with no branch per value: adding 1 to an all-ones exponent carries
// into the sign bit. Two values a 64-bit word (each half's carry stops at
// its own top bit), so a 248k vocabulary costs ~45 µs a token, half of a
// value at a time. The model's check of a step's logits and the CPU
// backend's ArgMax.
func AllFinite(v []float32) bool {
	const exp, one = 0x7f800000, 0x00800000
	const exp2, one2 = exp<<32 | exp, one<<32 | one
	var t uint32
	if len(v) > 0 && uintptr(unsafe.Pointer(&v[0]))%8 != 0 {
		// A first value off the 8-byte grid alone: the rest reads as
		// aligned words.
		t, v = math.Float32bits(v[0])&exp+one, v[1:]
	}
	if len(v)%2 == 1 {
		t |= math.Float32bits(v[len(v)-1])&exp + one
	}
	if len(v) < 2 {
		// No word to read: a *uint64 over fewer than 8 bytes would point
		// past (or across) the values' allocation, which checkptr (-race)
		// rightly refuses.
		return t&0x80000000 == 0
	}
	w := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(v))), len(v)/2)
	var a, b, c, d uint64
	n := len(w) &^ 3
	for i := 0; i < n; i += 4 {
		q := w[i : i+4 : i+4]
		a |= q[0]&exp2 + one2
		b |= q[1]&exp2 + one2
		c |= q[2]&exp2 + one2
		d |= q[3]&exp2 + one2
	}
	for _, x := range w[n:] {
		a |= x&exp2 + one2
	}
	m := a | b | c | d
	return (t|uint32(m)|uint32(m>>32))&0x80000000 == 0
}
