//go:build amd64 && !purego

package cpu

import (
	"golang.org/x/sys/cpu"

	"github.com/fmoe/fmoe/runtime/backend"
)

var haveAsm = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// q4RowsAVX2 computes rows consecutive dot products of 4-bit rows with
// group 64 (groups per row) against xt, the token re-ordered by q4Order,
// writing y[0:rows]. s and b point at the rows' bf16 scales and biases,
// sx at the per-group sums of x.
//
//go:noescape
func q4RowsAVX2(w, s, b *byte, groups int, xt, sx, y *float32, rows int)

// asmQ4 drives q4RowsAVX2. The kernel loads 8 words (one group of 64) into
// a vector; lane i of nibble n holds column 8i+n, hence the re-ordering of x.
type asmQ4 struct{}

func (asmQ4) prep(w *backend.Weight, x []float32, T int, p *prepared) {
	C, ng := w.Cols, w.Groups()
	b := p.reset(x, T*(C+ng))
	p.xt, p.sx = b[:T*C], b[T*C:]
	p.groupSums(w, T)
	q4Order(p.xt, x[:T*C])
}

func q4Order(xt, x []float32) {
	for b := 0; b+64 <= len(x); b += 64 {
		src := x[b : b+64 : b+64]
		dst := xt[b : b+64 : b+64]
		for n := 0; n < 8; n++ {
			for i := 0; i < 8; i++ {
				dst[n*8+i] = src[8*i+n]
			}
		}
	}
}

func (asmQ4) rows(w *backend.Weight, r0, r1 int, p *prepared, t int, y []float32) {
	if r1 <= r0 {
		return
	}
	C, ng := w.Cols, p.ng
	rb := w.RowBytes()
	q4RowsAVX2(&w.Data[r0*rb], &w.Scales[2*r0*ng], &w.Biases[2*r0*ng], ng,
		&p.xt[t*C], &p.sx[t*ng], &y[r0], r1-r0)
}

func asmKernel(w *backend.Weight) kernel {
	if w.Format == backend.Q4 && w.Group == 64 {
		return asmQ4{}
	}
	return nil
}
