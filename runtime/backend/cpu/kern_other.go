//go:build !(amd64 || arm64) || purego

package cpu

import "github.com/fmoe/fmoe/runtime/backend"

const (
	isaGo = iota
)

const bestISA = isaGo

var isaNames = [...]string{isaGo: "go"}

func asmKernel(w *backend.Weight, isa int) kernel { return nil }

func readSum(b []byte) uint64 { return readSumGo(b) }

// dotVec, axpyVec, decayRead and updateRead are never called without
// assembly (be.isa is isaGo, deltaAsm false): they are here so that
// attention and DeltaNet compile on every architecture.
func dotVec(a, b []float32) float32 {
	var s float32
	for i, x := range a {
		s += x * b[i]
	}
	return s
}

func axpyVec(y, x []float32, a float32) {
	for i := range y {
		y[i] += a * x[i]
	}
}

func decayRead(row, mem []float32, g, k float32) {
	for j := range row {
		row[j] *= g
		mem[j] += row[j] * k
	}
}

func updateRead(row, mem, out []float32, k, q float32) {
	for j := range row {
		row[j] += k * mem[j]
		out[j] += row[j] * q
	}
}
