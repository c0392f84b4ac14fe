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

// These let a collective library (NCCL, in runtime/parallel) work on the
// backend's buffers in order with its ops; they are not used by the model.

// Ordinal is the CUDA device ordinal the backend runs on.
func (be *Backend) Ordinal() int { return be.dev.ordinal }

// Stream is the raw CUstream every op is queued on: work queued on it by
// another library runs after the ops before it and before those after.
func (be *Backend) Stream() uintptr { return uintptr(unsafe.Pointer(be.stream)) }

// DevicePointer is b's device address and its length in float32 values.
func (be *Backend) DevicePointer(b backend.Buffer) (uintptr, int, error) {
	x, err := be.data(b, "collective")
	if err != nil {
		return 0, 0, err
	}
	return uintptr(x.ptr), x.n, nil
}

// DeviceCount is the number of CUDA devices visible (CUDA_VISIBLE_DEVICES
// applies), or an error saying why there are none to count.
func DeviceCount() (int, error) {
	if err := loadDriver(); err != nil {
		return 0, err
	}
	var n C.int
	if err := cuErr(C.fm_device_count(&n), "cuDeviceGetCount"); err != nil {
		return 0, err
	}
	if n < 1 {
		return 0, fmt.Errorf("cuda: no CUDA device visible")
	}
	return int(n), nil
}
