package backendtest

import (
	"encoding/binary"
	"math"
	"math/rand/v2"

	"github.com/fmoe/fmoe/runtime/backend"
)

// RandomWeight returns a [rows, cols] weight of the given format with random
// contents, and its exact values in float64 (what the bytes encode). For the
// affine formats the scales are positive and the biases about −scale·2^(bits−1),
// the shape MLX's quantiser produces for zero-mean weights.
func RandomWeight(rng *rand.Rand, f backend.Format, rows, cols, group int) (backend.Weight, []float64) {
	w := backend.Weight{Rows: rows, Cols: cols, Format: f, Group: group}
	vals := make([]float64, rows*cols)
	le := binary.LittleEndian
	switch f {
	case backend.Q2, backend.Q4, backend.Q8:
		bits := f.Bits()
		per := 32 / bits
		ng := cols / group
		w.Data = make([]byte, rows*cols*bits/8)
		w.Scales = make([]byte, rows*ng*2)
		w.Biases = make([]byte, rows*ng*2)
		levels := 1 << bits
		for r := 0; r < rows; r++ {
			for g := 0; g < ng; g++ {
				s := toBF16(float32(0.01 + 0.05*rng.Float64()))
				b := toBF16(float32(-float64(bf16f(s)) * float64(levels) / 2 * (0.8 + 0.4*rng.Float64())))
				le.PutUint16(w.Scales[2*(r*ng+g):], s)
				le.PutUint16(w.Biases[2*(r*ng+g):], b)
				for j := g * group; j < (g+1)*group; j++ {
					q := uint32(rng.IntN(levels))
					off := r*cols*bits/8 + 4*(j/per)
					word := le.Uint32(w.Data[off:])
					word |= q << (bits * (j % per))
					le.PutUint32(w.Data[off:], word)
					vals[r*cols+j] = float64(q)*float64(bf16f(s)) + float64(bf16f(b))
				}
			}
		}
	case backend.BF16:
		w.Data = make([]byte, rows*cols*2)
		for i := range vals {
			h := toBF16(float32(rng.NormFloat64() * 0.1))
			le.PutUint16(w.Data[2*i:], h)
			vals[i] = float64(bf16f(h))
		}
	case backend.F16:
		w.Data = make([]byte, rows*cols*2)
		for i := range vals {
			// Random normal halves: sign, exponent 10..17 (≈ 2^-5..2^2), mantissa.
			h := uint16(rng.IntN(2))<<15 | uint16(10+rng.IntN(8))<<10 | uint16(rng.IntN(1024))
			if i%97 == 0 {
				h = uint16(rng.IntN(1024)) // a subnormal now and then
			}
			le.PutUint16(w.Data[2*i:], h)
			vals[i] = float64(backend.F16ToF32(h))
		}
	case backend.F32:
		w.Data = make([]byte, rows*cols*4)
		for i := range vals {
			v := float32(rng.NormFloat64() * 0.1)
			le.PutUint32(w.Data[4*i:], math.Float32bits(v))
			vals[i] = float64(v)
		}
	}
	return w, vals
}

// DenseF32 returns a [rows, cols] F32 weight holding vals.
func DenseF32(rows, cols int, vals []float32) backend.Weight {
	d := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(d[4*i:], math.Float32bits(v))
	}
	return backend.Weight{Rows: rows, Cols: cols, Format: backend.F32, Data: d}
}

// toBF16 rounds to nearest even.
func toBF16(f float32) uint16 {
	b := math.Float32bits(f)
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

func bf16f(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

func randVec(rng *rand.Rand, n int, sd float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * sd)
	}
	return v
}
