package cpu

import (
	"encoding/binary"
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
)

var le = binary.LittleEndian

func bf16at(b []byte, i int) float32 { return math.Float32frombits(uint32(le.Uint16(b[2*i:])) << 16) }

// goQuant is the pure-Go affine kernel. Per group it computes
// d = Σ (q_j−m) x_j with m = 2^(bits−1) and adds s·d + (b+m·s)·Σx: the same
// sum as Σ (q_j s + b) x_j with one multiply per weight instead of two.
// Centring q on m matters: MLX biases sit near −m·s, so the uncentred form
// s·Σq x + b·Σx subtracts two large terms and loses precision whenever x
// has a non-zero mean (measured: 7× the reference path's error on the
// mlx4 golden). b+m·s is exact in float32 for such bf16 pairs.
type goQuant struct{}

func (goQuant) prep(w *backend.Weight, x []float32, T int, p *prepared) {
	p.sx = p.reset(x, T*w.Groups())
	p.groupSums(w, T)
}

func (goQuant) rows(w *backend.Weight, r0, r1 int, p *prepared, t int, y []float32) {
	C, ng, G := w.Cols, p.ng, w.Group
	x := p.x[t*C : (t+1)*C]
	sx := p.sx[t*ng : (t+1)*ng]
	rb := w.RowBytes()
	for r := r0; r < r1; r++ {
		row := w.Data[r*rb : (r+1)*rb]
		sc := w.Scales[2*r*ng : 2*(r+1)*ng]
		bi := w.Biases[2*r*ng : 2*(r+1)*ng]
		var v float32
		switch w.Format {
		case backend.Q4:
			v = dotQ4(row, sc, bi, x, sx, G)
		case backend.Q2:
			v = dotQ2(row, sc, bi, x, sx, G)
		case backend.Q8:
			v = dotQ8(row, sc, bi, x, sx, G)
		}
		y[r] = v
	}
}

func dotQ4(row, sc, bi []byte, x, sx []float32, G int) float32 {
	var acc float32
	gb := G / 2 // bytes per group
	for g := range sx {
		xs := x[g*G : (g+1)*G]
		ws := row[g*gb : (g+1)*gb]
		var d0, d1 float32
		for i := 0; i+4 <= len(ws); i += 4 {
			v := le.Uint32(ws[i:])
			xx := xs[2*i : 2*i+8 : 2*i+8]
			d0 += float32(int32(v&15)-8)*xx[0] + float32(int32(v>>4&15)-8)*xx[1] +
				float32(int32(v>>8&15)-8)*xx[2] + float32(int32(v>>12&15)-8)*xx[3]
			d1 += float32(int32(v>>16&15)-8)*xx[4] + float32(int32(v>>20&15)-8)*xx[5] +
				float32(int32(v>>24&15)-8)*xx[6] + float32(int32(v>>28)-8)*xx[7]
		}
		s := bf16at(sc, g)
		acc += s*(d0+d1) + (bf16at(bi, g)+8*s)*sx[g]
	}
	return acc
}

func dotQ2(row, sc, bi []byte, x, sx []float32, G int) float32 {
	var acc float32
	gb := G / 4
	for g := range sx {
		xs := x[g*G : (g+1)*G]
		ws := row[g*gb : (g+1)*gb]
		var d0, d1 float32
		for i := 0; i+4 <= len(ws); i += 4 {
			v := le.Uint32(ws[i:])
			xx := xs[4*i : 4*i+16 : 4*i+16]
			for n := 0; n < 16; n += 2 {
				d0 += float32(int32(v>>(2*n)&3)-2) * xx[n]
				d1 += float32(int32(v>>(2*n+2)&3)-2) * xx[n+1]
			}
		}
		s := bf16at(sc, g)
		acc += s*(d0+d1) + (bf16at(bi, g)+2*s)*sx[g]
	}
	return acc
}

func dotQ8(row, sc, bi []byte, x, sx []float32, G int) float32 {
	var acc float32
	for g := range sx {
		xs := x[g*G : (g+1)*G]
		ws := row[g*G : (g+1)*G]
		var d0, d1 float32
		for i := 0; i+4 <= len(ws); i += 4 {
			xx := xs[i : i+4 : i+4]
			d0 += float32(int32(ws[i])-128)*xx[0] + float32(int32(ws[i+1])-128)*xx[1]
			d1 += float32(int32(ws[i+2])-128)*xx[2] + float32(int32(ws[i+3])-128)*xx[3]
		}
		s := bf16at(sc, g)
		acc += s*(d0+d1) + (bf16at(bi, g)+128*s)*sx[g]
	}
	return acc
}

// goDense is the pure-Go kernel for bf16, f16 and f32 weights.
type goDense struct{}

func (goDense) prep(w *backend.Weight, x []float32, T int, p *prepared) {
	p.reset(x, 0)
}

func (goDense) rows(w *backend.Weight, r0, r1 int, p *prepared, t int, y []float32) {
	C := w.Cols
	x := p.x[t*C : (t+1)*C]
	for r := r0; r < r1; r++ {
		var d0, d1 float32
		switch w.Format {
		case backend.BF16:
			row := w.Data[r*C*2 : (r+1)*C*2]
			j := 0
			for ; j+2 <= C; j += 2 {
				v := le.Uint32(row[2*j:])
				d0 += math.Float32frombits(v<<16) * x[j]
				d1 += math.Float32frombits(v&0xffff0000) * x[j+1]
			}
			for ; j < C; j++ {
				d0 += bf16at(row, j) * x[j]
			}
		case backend.F16:
			row := w.Data[r*C*2 : (r+1)*C*2]
			for j := 0; j < C; j++ {
				d0 += backend.F16ToF32(le.Uint16(row[2*j:])) * x[j]
			}
		case backend.F32:
			row := w.Data[r*C*4 : (r+1)*C*4]
			j := 0
			for ; j+2 <= C; j += 2 {
				d0 += math.Float32frombits(le.Uint32(row[4*j:])) * x[j]
				d1 += math.Float32frombits(le.Uint32(row[4*j+4:])) * x[j+1]
			}
			for ; j < C; j++ {
				d0 += math.Float32frombits(le.Uint32(row[4*j:])) * x[j]
			}
		}
		y[r] = d0 + d1
	}
}
