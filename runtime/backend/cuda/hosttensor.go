//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend"
)

// tensorInHost lays w out in mem, pinned host memory from HostAlloc, as
// Register lays it out on the device (data, then scales and biases at
// 256-byte offsets; HostAlloc's memory is page-aligned), and returns a
// tensor whose pointers are mem's: under unified addressing (every 64-bit
// process) memory from cuMemHostAlloc is directly accessible to kernels at
// its host address, so a kernel given the tensor reads the weights over the
// link as it computes (zero-copy), with no copy into device memory first.
// The tensor is valid while mem is (and is not bound: Release refuses it, as
// it refuses a registered one).
//
// What it is for: measuring whether an expert the GPU tier does not hold is
// better computed straight from the host tier than copied in first
// (BenchmarkMMVFromHost). On an H200 it was not (docs/benchmarks.md run
// 25: the SMs' loads reach 87-91% of the copy engine's rate, and one
// missing expert of a batch takes the time its copy does), so no miss
// path uses it; it stays to rerun on a card whose link differs.
func (be *Backend) tensorInHost(w backend.Weight, mem []byte) (*tensor, error) {
	if be.closed {
		return nil, errClosed
	}
	if err := checkWeight(w); err != nil {
		return nil, err
	}
	so, bo, size := layout(w)
	if len(mem) < size || !be.isPinned(mem[:size]) {
		return nil, fmt.Errorf("cuda: a weight in host memory needs %d bytes of pinned memory from HostAlloc (got %d bytes, pinned: %v)", size, len(mem), be.isPinned(mem))
	}
	copy(mem, w.Data)
	copy(mem[so:], w.Scales)
	copy(mem[bo:], w.Biases)
	return be.newTensor(w, C.CUdeviceptr(uintptr(unsafe.Pointer(&mem[0])))), nil
}
