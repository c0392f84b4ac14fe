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
