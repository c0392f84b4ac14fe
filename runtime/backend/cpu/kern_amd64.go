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

var bestISA = capISA(detectISA())

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

// isaFirstASM is the lowest level with assembly kernels.
const isaFirstASM = isaAVX2

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

// q2Rows2AVX512 is q2RowsAVX512 two rows at a time: rows even, groups a
// multiple of 4.
//
//go:noescape
func q2Rows2AVX512(w, s, b *byte, groups int, xt, sx, y *float32, rows int)

// q2Rows4AVX512 is q2Rows2AVX512 four rows at a time: rows a multiple of
// 4, groups a multiple of 4.
//
//go:noescape
func q2Rows4AVX512(w, s, b *byte, groups int, xt, sx, y *float32, rows int)

//go:noescape
func q8RowsAVX512(w, s, b *byte, groups int, xt, sx, y *float32, rows int)

// q2PrepAVX512 writes blocks runs of 256 columns of x into xt in the 2-bit
// AVX-512 block order and their group sums into sx (asmAffine.fast).
//
//go:noescape
func q2PrepAVX512(x, xt, sx *float32, blocks int)

// bf16Rows kernels compute rows dot products of bf16 rows of blocks·32
// (AVX2) or blocks·64 (AVX-512) columns with x.
//
//go:noescape
func bf16RowsAVX2(w *byte, blocks int, x, y *float32, rows int)

//go:noescape
func bf16RowsAVX512(w *byte, blocks int, x, y *float32, rows int)

//go:noescape
func readSumAVX2(p *byte, blocks int) uint64

var (
	// q4 AVX2: lane i holds word i; step n reads its nibble n, in place
	// (q·16^n) for n < 7, and centres each lane's sum on 8 once per group.
	kQ4AVX2 = &asmAffine{fn: q4RowsAVX2, order: xorder(64, 8, func(l, k int) int { return 8*l + k }),
		scale: xscale(8, q4AVX2Exp...), centre: 8, lanes: 8}
	// q2 AVX2: lane i<4 holds word i, lane 4+i word i >> 16; step k reads
	// crumb k. Blocks of 2 groups: lane i holds word i, step k reads crumb k.
	kQ2AVX2 = &asmAffine{fn: q2RowsAVX2, order: xorder(64, 8, func(l, k int) int { return 16*(l&3) + 8*(l>>2) + k }),
		block: xorder(128, 8, func(l, k int) int { return 16*l + k })}
	kQ8AVX2 = &asmAffine{fn: q8RowsAVX2}
	// q4 AVX-512: lane i<8 holds word i, lane 8+i word i >> 16; step k
	// reads nibble k. Blocks of 2 groups: lane i holds word i, step k reads
	// nibble k.
	kQ4AVX512 = &asmAffine{fn: q4RowsAVX512,
		order: xorder(64, 16, func(l, k int) int { return 8*(l&7) + 4*(l>>3) + k }),
		block: xorder(128, 16, func(l, k int) int { return 8*l + k })}
	// q2 AVX-512: lane 4c+i holds word i >> 8c; step k reads crumb k.
	// Blocks of 4 groups: lane i holds word i, step k reads crumb k.
	// Runs of four rows go faster as one pass (quad: each load of x serves
	// four rows), then pairs, then single rows.
	kQ2AVX512 = &asmAffine{fn: q2RowsAVX512, pair: q2Rows2AVX512, quad: q2Rows4AVX512,
		fast: q2PrepAVX512, order: q2AVX512Order, block: q2AVX512Block}
	// kQ2AVX512Pair is kQ2AVX512 without the four-row pass (round 3's
	// kernel), kept for comparison (BenchmarkBandwidth's avx512-pair).
	kQ2AVX512Pair = &asmAffine{fn: q2RowsAVX512, pair: q2Rows2AVX512,
		order: q2AVX512Order, block: q2AVX512Block}
	kQ8AVX512 = &asmAffine{fn: q8RowsAVX512}

	kBF16AVX2   = &asmBF16{bf16RowsAVX2, 32}
	kBF16AVX512 = &asmBF16{bf16RowsAVX512, 64}
)

var (
	q2AVX512Order = xorder(64, 16, func(l, k int) int { return 16*(l&3) + 4*(l>>2) + k })
	q2AVX512Block = xorder(256, 16, func(l, k int) int { return 16*l + k })
)

// asmKernels[isa][format] is the kernel for each format at each level.
// An AVX-512 entry is there only where it measured faster than AVX2
// (docs/benchmarks.md); the others repeat the AVX2 kernel.
var asmKernels = [...]map[backend.Format]kernel{
	isaAVX2:   {backend.Q4: kQ4AVX2, backend.Q2: kQ2AVX2, backend.Q8: kQ8AVX2, backend.BF16: kBF16AVX2},
	isaAVX512: {backend.Q4: kQ4AVX512, backend.Q2: kQ2AVX512, backend.Q8: kQ8AVX512, backend.BF16: kBF16AVX512},
}

// affineKernels names the kernels whose x orders TestKernelOrders checks.
var affineKernels = map[string]*asmAffine{"q4avx2": kQ4AVX2, "q2avx2": kQ2AVX2, "q4avx512": kQ4AVX512, "q2avx512": kQ2AVX512}

// readSum reads b (whose length is a multiple of 128) at the CPU's full
// load rate, for the bandwidth benchmarks.
func readSum(b []byte) uint64 {
	if len(b) < 128 || bestISA < isaAVX2 {
		return readSumGo(b)
	}
	return readSumAVX2(&b[0], len(b)/128)
}
