// Package shaders holds the GPU kernels as source text, embedded in the
// binary and compiled at run time for the card found (NVRTC for CUDA).
//
// The kernel bodies are written once in a small shared dialect (see
// prelude_cuda.h) so that the Metal backend can compile the same bodies
// behind its own prelude.
package shaders

import (
	_ "embed"
	"strings"
)

var (
	//go:embed prelude_cuda.h
	preludeCUDA string
	//go:embed common.h
	common string
	//go:embed matvec.h
	matvec string
	//go:embed norm.h
	norm string
	//go:embed attention.h
	attention string
	//go:embed latent.h
	latent string
	//go:embed recurrent.h
	recurrent string
	//go:embed elementwise.h
	elementwise string
	//go:embed batch_cuda.h
	batchCUDA string
	//go:embed route_cuda.h
	routeCUDA string
	//go:embed mma_cuda.h
	mmaCUDA string
	//go:embed mmv_cuda.h
	mmvCUDA string
)

// Bodies are the API-independent kernel sources, in inclusion order.
func Bodies() []string {
	return []string{common, matvec, norm, attention, latent, recurrent, elementwise}
}

// CUDA is the complete CUDA C translation unit: the CUDA prelude, the
// bodies, then the CUDA-only kernels (batched matvecs, routing and the
// indexed experts, the tensor-core prefill matmul and one-token matvec).
// It needs no include path.
func CUDA() string {
	return CUDAShared() + "\n" + batchCUDA + "\n" + routeCUDA + "\n" + mmaCUDA + "\n" + mmvCUDA
}

// CUDAShared is the CUDA translation unit of the kernels Metal has too: the
// prelude and the bodies. The batched expert matvecs (batch_cuda.h) are
// CUDA's alone: their job table holds device pointers, which Metal would
// pass as argument buffers.
func CUDAShared() string { return preludeCUDA + "\n" + strings.Join(Bodies(), "\n") }
