//go:build (amd64 || arm64) && !purego

package cpu

import (
	"fmt"
	"math"
	"os"

	"github.com/fmoe/fmoe/runtime/backend"
)

// The assembly drivers shared by the amd64 and arm64 kernels: each
// architecture's file declares its kernels and their lane orders, and the
// table asmKernels[isa][format].

// asmAffine drives one affine assembly kernel. order[i] is the column of
// a group whose x value goes to xt[i]: step k of the kernel reads xt[L·k :
// L·(k+1)] for lane width L, matching the column each lane decodes at that
// step; nil means the kernel reads x in column order.
//
// A kernel with a block order handles runs of len(block)/64 groups at once
// (x in block order) and the groups left over one at a time (x in order).
//
// pair, where there is one, is fn for an even number of rows of whole
// blocks, two rows at a time (each load of x serves both); quad, where
// there is one, the same for a multiple of four rows, four at a time.
//
// scale, where there is one, multiplies xt[i] of each single-group order
// (no blocks) by a power of two: kernels that decode a field in place,
// q·2^j, read x·2^−j, so each product is q·x exactly. Such a kernel sums
// q·x uncentred, so centre (its m, lanes lanes) follows each group's 64
// values of xt with m·Σx over each lane's columns, which it subtracts.
type asmAffine struct {
	fn   func(w, s, b *byte, groups int, xt, sx, y *float32, rows int)
	pair func(w, s, b *byte, groups int, xt, sx, y *float32, rows int)
	quad func(w, s, b *byte, groups int, xt, sx, y *float32, rows int)
	// fast, where there is one, writes blocks runs of 256 columns of xt in
	// block order (a 16×16 transpose) and their 4·blocks group sums.
	fast   func(x, xt, sx *float32, blocks int)
	order  []uint8
	block  []uint8
	scale  []float32
	centre float32
	lanes  int
}

// xlen is the length of one token's xt for C columns.
func (k *asmAffine) xlen(C int) int {
	if k.centre != 0 {
		return C / 64 * (64 + k.lanes)
	}
	return C
}

// xorder builds a kernel's x order over n columns from col(lane, step)
// for lanes lanes.
func xorder(n, lanes int, col func(lane, k int) int) []uint8 {
	o := make([]uint8, n)
	for k := 0; k < n/lanes; k++ {
		for l := 0; l < lanes; l++ {
			o[k*lanes+l] = uint8(col(l, k))
		}
	}
	return o
}

func asmKernel(w *backend.Weight, isa int) kernel {
	if isa <= isaGo || isa >= len(asmKernels) {
		return nil
	}
	k := asmKernels[isa][w.Format]
	switch k := k.(type) {
	case *asmAffine:
		if w.Group != 64 {
			return nil
		}
	case *asmBF16:
		if w.Cols%k.block != 0 {
			return nil
		}
	}
	return k
}

func (k *asmAffine) prep(w *backend.Weight, x []float32, T int, p *prepared) {
	C, ng := w.Cols, w.Groups()
	if k.fast != nil && len(k.block) == 256 && w.Group == 64 && C >= 256 {
		k.prepFast(w, x, T, p)
		return
	}
	if k.order == nil {
		p.sx = p.reset(x, T*ng)
		p.xt = x[:T*C]
	} else {
		n := k.xlen(C)
		b := p.reset(x, T*(n+ng))
		p.xt, p.sx = b[:T*n], b[T*n:]
		for t := 0; t < T; t++ {
			k.reorder(p.xt[t*n:(t+1)*n], x[t*C:(t+1)*C])
		}
	}
	p.groupSums(w, T)
}

// prepFast is prep with k.fast doing the whole blocks: the re-order and
// their group sums; the single groups left over as before.
func (k *asmAffine) prepFast(w *backend.Weight, x []float32, T int, p *prepared) {
	C, ng := w.Cols, w.Groups()
	n := k.xlen(C)
	b := p.reset(x, T*(n+ng))
	p.xt, p.sx, p.ng = b[:T*n], b[T*n:], ng
	nb := C / 256
	for t := 0; t < T; t++ {
		xr, xt, sx := x[t*C:(t+1)*C], p.xt[t*n:(t+1)*n], p.sx[t*ng:(t+1)*ng]
		k.fast(&xr[0], &xt[0], &sx[0], nb)
		for g := 4 * nb; g < ng; g++ {
			c := 64 * g
			permute(xt[c:c+64], xr[c:c+64], k.order)
			var s float32
			for _, v := range xr[c : c+64] {
				s += v
			}
			sx[g] = s
		}
	}
}

// reorder puts one token's x in the kernel's order: blocks first, then
// single groups.
func (k *asmAffine) reorder(xt, x []float32) {
	b := 0
	if n := len(k.block); n > 0 {
		for ; b+n <= len(x); b += n {
			permute(xt[b:b+n], x[b:b+n], k.block)
		}
	}
	if k.centre != 0 && k.lanes == 8 {
		k.reorderCentred(xt, x)
		return
	}
	for ; b+64 <= len(x); b += 64 {
		permute(xt[b:b+64], x[b:b+64], k.order)
	}
}

// reorderCentred is reorder for a kernel with scale and centre (no
// blocks, 8 lanes): each group's 64 scaled values, then m·Σx per lane.
func (k *asmAffine) reorderCentred(xt, x []float32) {
	sc, o := (*[64]float32)(k.scale), (*[64]uint8)(k.order)
	for g := 0; g+64 <= len(x); g += 64 {
		d := (*[72]float32)(xt[g/64*72:])
		src := (*[64]float32)(x[g:])
		var s [8]float32
		for i := 0; i < 64; i += 8 {
			for l := 0; l < 8; l++ {
				v := src[o[i+l]]
				s[l] += v
				d[i+l] = v * sc[i+l]
			}
		}
		for l, v := range s {
			d[64+l] = v * k.centre
		}
	}
}

// xscale is the scale of a kernel of lanes lanes whose step k reads its
// field at bits exp[k] in place (q·2^exp[k]).
func xscale(lanes int, exp ...int) []float32 {
	s := make([]float32, lanes*len(exp))
	for i := range s {
		s[i] = float32(math.Ldexp(1, -exp[i/lanes]))
	}
	return s
}

// permute is dst[i] = src[o[i]] for the order sizes there are (64, 128,
// 256), on arrays so that a uint8 index needs no bounds check.
func permute(dst, src []float32, o []uint8) {
	switch len(o) {
	case 256:
		d, s, o := (*[256]float32)(dst), (*[256]float32)(src), (*[256]uint8)(o)
		for i := 0; i < 256; i += 4 {
			d[i], d[i+1], d[i+2], d[i+3] = s[o[i]], s[o[i+1]], s[o[i+2]], s[o[i+3]]
		}
	default:
		dst = dst[:len(o)]
		src = src[:len(o)]
		for i, c := range o {
			dst[i] = src[c]
		}
	}
}

func (k *asmAffine) rows(w *backend.Weight, r0, r1 int, p *prepared, t int, y []float32) {
	if r1 <= r0 {
		return
	}
	C, ng := w.Cols, p.ng
	rb := w.RowBytes()
	xt := p.xt[t*k.xlen(C):]
	whole := len(k.block) > 0 && C%len(k.block) == 0
	if k.quad != nil && whole && r1-r0 >= 4 {
		n := (r1 - r0) &^ 3
		k.quad(&w.Data[r0*rb], &w.Scales[2*r0*ng], &w.Biases[2*r0*ng], ng,
			&xt[0], &p.sx[t*ng], &y[r0], n)
		if r0 += n; r0 == r1 {
			return
		}
	}
	if k.pair != nil && whole && r1-r0 >= 2 {
		n := (r1 - r0) &^ 1
		k.pair(&w.Data[r0*rb], &w.Scales[2*r0*ng], &w.Biases[2*r0*ng], ng,
			&xt[0], &p.sx[t*ng], &y[r0], n)
		if r0 += n; r0 == r1 {
			return
		}
	}
	k.fn(&w.Data[r0*rb], &w.Scales[2*r0*ng], &w.Biases[2*r0*ng], ng,
		&xt[0], &p.sx[t*ng], &y[r0], r1-r0)
}

// asmBF16 drives a bf16 kernel; block is its column multiple.
type asmBF16 struct {
	fn    func(w *byte, blocks int, x, y *float32, rows int)
	block int
}

func (k *asmBF16) prep(w *backend.Weight, x []float32, T int, p *prepared) { p.reset(x, 0) }

func (k *asmBF16) rows(w *backend.Weight, r0, r1 int, p *prepared, t int, y []float32) {
	if r1 <= r0 {
		return
	}
	C := w.Cols
	k.fn(&w.Data[r0*C*2], C/k.block, &p.x[t*C], &y[r0], r1-r0)
}

// dotASM and axpyASM (n a multiple of 16) are in each architecture's .s.
//
//go:noescape
func dotASM(a, b *float32, n int) float32

//go:noescape
func axpyASM(y, x *float32, a float32, n int)

// dotVec is Σ a[i]·b[i] over len(a) (b at least as long), vectorised.
func dotVec(a, b []float32) float32 {
	n := len(a) &^ 15
	var s float32
	if n > 0 {
		b = b[:len(a)]
		s = dotASM(&a[0], &b[0], n)
	}
	for i := n; i < len(a); i++ {
		s += a[i] * b[i]
	}
	return s
}

// axpyVec is y[i] += a·x[i] over len(y) (x at least as long), vectorised.
func axpyVec(y, x []float32, a float32) {
	n := len(y) &^ 15
	if n > 0 {
		x = x[:len(y)]
		axpyASM(&y[0], &x[0], a, n)
	}
	for i := n; i < len(y); i++ {
		y[i] += a * x[i]
	}
}

// decayReadASM and updateReadASM (n a multiple of 16) are the sequential
// DeltaNet's two passes over a row of the state (ops2.go).
//
//go:noescape
func decayReadASM(row, mem *float32, decay, k float32, n int)

//go:noescape
func updateReadASM(row, mem, out *float32, k, q float32, n int)

// decayRead is row[j] *= g; mem[j] += row[j]·k over len(row).
func decayRead(row, mem []float32, g, k float32) {
	n := len(row) &^ 15
	mem = mem[:len(row)]
	if n > 0 {
		decayReadASM(&row[0], &mem[0], g, k, n)
	}
	for j := n; j < len(row); j++ {
		row[j] *= g
		mem[j] += row[j] * k
	}
}

// updateRead is row[j] += k·mem[j]; out[j] += row[j]·q over len(row).
func updateRead(row, mem, out []float32, k, q float32) {
	n := len(row) &^ 15
	mem, out = mem[:len(row)], out[:len(row)]
	if n > 0 {
		updateReadASM(&row[0], &mem[0], &out[0], k, q, n)
	}
	for j := n; j < len(row); j++ {
		row[j] += k * mem[j]
		out[j] += row[j] * q
	}
}

// capISA is have, lowered to the level named by FMOE_CPU_ISA where that is
// lower (the package doc).
func capISA(have int) int {
	want := os.Getenv("FMOE_CPU_ISA")
	if want == "" {
		return have
	}
	for isa, name := range isaNames {
		if name == want {
			return min(have, isa)
		}
	}
	fmt.Fprintf(os.Stderr, "cpu: FMOE_CPU_ISA=%q is not one of %v; ignored\n", want, isaNames)
	return have
}
