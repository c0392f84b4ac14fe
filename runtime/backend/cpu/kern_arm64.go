//go:build arm64 && !purego

package cpu

import (
	"golang.org/x/sys/cpu"

	"github.com/fmoe/fmoe/runtime/backend"
)

// The instruction sets with kernels. Every arm64 core Go runs on has NEON
// (ASIMD); the check keeps a core without it on the pure-Go kernels.
const (
	isaGo = iota
	isaNEON
)

var bestISA = capISA(detectISA())

func detectISA() int {
	if cpu.ARM64.HasASIMD {
		return isaNEON
	}
	return isaGo
}

var isaNames = [...]string{isaGo: "go", isaNEON: "neon"}

// isaFirstASM is the lowest level with assembly kernels.
const isaFirstASM = isaNEON

//go:generate python3 asmgen_arm64.py

// The affine and bf16 kernels have the signatures of the amd64 ones
// (kern_amd64.go); bf16 rows are blocks·32 columns.

//go:noescape
func q4RowsNEON(w, s, b *byte, groups int, xt, sx, y *float32, rows int)

//go:noescape
func q2RowsNEON(w, s, b *byte, groups int, xt, sx, y *float32, rows int)

//go:noescape
func q8RowsNEON(w, s, b *byte, groups int, xt, sx, y *float32, rows int)

//go:noescape
func bf16RowsNEON(w *byte, blocks int, x, y *float32, rows int)

//go:noescape
func readSumNEON(p *byte, blocks int) uint64

var (
	// q4: step k reads, in lane l, the nibble (k/4)%2 of byte
	// 16·(k/8) + 4·(k%4) + l, the column twice the byte plus the nibble.
	kQ4NEON = &asmAffine{fn: q4RowsNEON, order: xorder(64, 4, func(l, k int) int {
		return 2*(16*(k/8)+4*(k%4)+l) + (k/4)%2
	})}
	// q2: step k reads crumb k/4 of byte 4·(k%4) + l.
	kQ2NEON = &asmAffine{fn: q2RowsNEON, order: xorder(64, 4, func(l, k int) int {
		return 4*(4*(k%4)+l) + k/4
	})}
	kQ8NEON   = &asmAffine{fn: q8RowsNEON}
	kBF16NEON = &asmBF16{bf16RowsNEON, 32}
)

// asmKernels[isa][format] is the kernel for each format at each level.
var asmKernels = [...]map[backend.Format]kernel{
	isaNEON: {backend.Q4: kQ4NEON, backend.Q2: kQ2NEON, backend.Q8: kQ8NEON, backend.BF16: kBF16NEON},
}

// affineKernels names the kernels whose x orders TestKernelOrders checks.
var affineKernels = map[string]*asmAffine{"q4neon": kQ4NEON, "q2neon": kQ2NEON}

// readSum reads b (whose length is a multiple of 128) at the CPU's full
// load rate, for the bandwidth benchmarks.
func readSum(b []byte) uint64 {
	if len(b) < 128 || bestISA < isaNEON {
		return readSumGo(b)
	}
	return readSumNEON(&b[0], len(b)/128)
}
