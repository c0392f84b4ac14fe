//go:build amd64 && !purego

package cpu

import (
	"golang.org/x/sys/cpu"

	"github.com/fmoe/fmoe/runtime/backend"
)

// The instruction sets with kernels, best last. x/sys/cpu reports AVX-512
// only where the OS saves the ZMM state.
const (
	isaGo = iota
	isaAVX2
	isaAVX512
)

var bestISA = detectISA()

func detectISA() int {
	x := cpu.X86
	switch {
	case x.HasAVX512F && x.HasAVX512BW && x.HasAVX512VL && x.HasAVX2 && x.HasFMA:
		return isaAVX512
	case x.HasAVX2 && x.HasFMA:
		return isaAVX2
	}
	return isaGo
}

var isaNames = [...]string{isaGo: "go", isaAVX2: "avx2", isaAVX512: "avx512"}

//go:generate python3 asmgen.py

// Every affine kernel computes rows consecutive dot products of group-64
// rows (groups per row) against xt, the token re-ordered for its lane
// layout, writing y[0:rows]. s and b point at the rows' bf16 scales and
// biases, sx at the per-group sums of x.

//go:noescape
func q4RowsAVX2(w, s, b *byte, groups int, xt, sx, y *float32, rows int)

//go:noescape
func q2RowsAVX2(w, s, b *byte, groups int, xt, sx, y *float32, rows int)

//go:noescape
func q8RowsAVX2(w, s, b *byte, groups int, xt, sx, y *float32, rows int)

//go:noescape
func q4RowsAVX512(w, s, b *byte, groups int, xt, sx, y *float32, rows int)

//go:noescape
func q2RowsAVX512(w, s, b *byte, groups int, xt, sx, y *float32, rows int)

//go:noescape
func q8RowsAVX512(w, s, b *byte, groups int, xt, sx, y *float32, rows int)

// bf16Rows kernels compute rows dot products of bf16 rows of blocks·32
// (AVX2) or blocks·64 (AVX-512) columns with x.
//
//go:noescape
func bf16RowsAVX2(w *byte, blocks int, x, y *float32, rows int)

//go:noescape
func bf16RowsAVX512(w *byte, blocks int, x, y *float32, rows int)

//go:noescape
func readSumAVX2(p *byte, blocks int) uint64

// asmAffine drives one affine assembly kernel. order[i] is the column of
// a group whose x value goes to xt[i]: step k of the kernel reads xt[L·k :
// L·(k+1)] for lane width L, matching the column each lane decodes at that
// step; nil means the kernel reads x in column order.
//
// A kernel with a block order handles runs of len(block)/64 groups at once
// (x in block order) and the groups left over one at a time (x in order).
type asmAffine struct {
	fn    func(w, s, b *byte, groups int, xt, sx, y *float32, rows int)
	order []uint8
	block []uint8
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

var (
	// q4 AVX2: lane i holds word i; step n reads its nibble n.
	kQ4AVX2 = &asmAffine{fn: q4RowsAVX2, order: xorder(64, 8, func(l, k int) int { return 8*l + k })}
	// q2 AVX2: lane i<4 holds word i, lane 4+i word i >> 16; step k reads crumb k.
	kQ2AVX2 = &asmAffine{fn: q2RowsAVX2, order: xorder(64, 8, func(l, k int) int { return 16*(l&3) + 8*(l>>2) + k })}
	kQ8AVX2 = &asmAffine{fn: q8RowsAVX2}
	// q4 AVX-512: lane i<8 holds word i, lane 8+i word i >> 16; step k
	// reads nibble k. Blocks of 2 groups: lane i holds word i, step k reads
	// nibble k.
	kQ4AVX512 = &asmAffine{fn: q4RowsAVX512,
		order: xorder(64, 16, func(l, k int) int { return 8*(l&7) + 4*(l>>3) + k }),
		block: xorder(128, 16, func(l, k int) int { return 8*l + k })}
	// q2 AVX-512: lane 4c+i holds word i >> 8c; step k reads crumb k.
	// Blocks of 4 groups: lane i holds word i, step k reads crumb k.
	kQ2AVX512 = &asmAffine{fn: q2RowsAVX512,
		order: xorder(64, 16, func(l, k int) int { return 16*(l&3) + 4*(l>>2) + k }),
		block: xorder(256, 16, func(l, k int) int { return 16*l + k })}
	kQ8AVX512 = &asmAffine{fn: q8RowsAVX512}

	kBF16AVX2   = &asmBF16{bf16RowsAVX2, 32}
	kBF16AVX512 = &asmBF16{bf16RowsAVX512, 64}
)

// asmKernels[isa][format] is the kernel for each format at each level.
// An AVX-512 entry is there only where it measured faster than AVX2
// (docs/benchmarks.md); the others repeat the AVX2 kernel.
var asmKernels = [...]map[backend.Format]kernel{
	isaAVX2:   {backend.Q4: kQ4AVX2, backend.Q2: kQ2AVX2, backend.Q8: kQ8AVX2, backend.BF16: kBF16AVX2},
	isaAVX512: {backend.Q4: kQ4AVX512, backend.Q2: kQ2AVX512, backend.Q8: kQ8AVX512, backend.BF16: kBF16AVX512},
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
	if k.order == nil {
		p.sx = p.reset(x, T*ng)
		p.xt = x[:T*C]
	} else {
		b := p.reset(x, T*(C+ng))
		p.xt, p.sx = b[:T*C], b[T*C:]
		for t := 0; t < T; t++ {
			k.reorder(p.xt[t*C:(t+1)*C], x[t*C:(t+1)*C])
		}
	}
	p.groupSums(w, T)
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
	for ; b+64 <= len(x); b += 64 {
		permute(xt[b:b+64], x[b:b+64], k.order)
	}
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
	k.fn(&w.Data[r0*rb], &w.Scales[2*r0*ng], &w.Biases[2*r0*ng], ng,
		&p.xt[t*C], &p.sx[t*ng], &y[r0], r1-r0)
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

// readSum reads b (whose length is a multiple of 128) at the CPU's full
// load rate, for the bandwidth benchmarks.
func readSum(b []byte) uint64 {
	if len(b) < 128 || bestISA < isaAVX2 {
		return readSumGo(b)
	}
	return readSumAVX2(&b[0], len(b)/128)
}
