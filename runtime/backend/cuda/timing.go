//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"errors"
	"time"
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend"
)

// gpuTime runs fn (which queues work on the compute stream) between two
// events and returns the device time between them, without the host's
// launch overhead when the host keeps ahead. For benchmarks.
func (be *Backend) gpuTime(fn func() error) (time.Duration, error) {
	var a, b C.CUevent
	if err := cuErr(C.fm_event_create(be.ctx, &a, 0), "cuEventCreate"); err != nil {
		return 0, err
	}
	defer C.fm_event_destroy(be.ctx, a)
	if err := cuErr(C.fm_event_create(be.ctx, &b, 0), "cuEventCreate"); err != nil {
		return 0, err
	}
	defer C.fm_event_destroy(be.ctx, b)
	if err := cuErr(C.fm_event_record(be.ctx, a, be.stream), "cuEventRecord"); err != nil {
		return 0, err
	}
	ferr := fn()
	if err := cuErr(C.fm_event_record(be.ctx, b, be.stream), "cuEventRecord"); err != nil {
		return 0, errors.Join(ferr, err)
	}
	if err := cuErr(C.fm_event_sync(be.ctx, b), "cuEventSynchronize"); err != nil {
		return 0, errors.Join(ferr, err)
	}
	var ms C.float
	if err := cuErr(C.fm_event_elapsed(be.ctx, &ms, a, b), "cuEventElapsedTime"); err != nil {
		return 0, errors.Join(ferr, err)
	}
	return time.Duration(float64(ms) * 1e6), ferr
}

// copyDtoD queues a device-to-device copy of n bytes (the bandwidth
// yardstick in the benchmarks).
func (be *Backend) copyDtoD(dst, src C.CUdeviceptr, n int) error {
	return cuErr(C.fm_dtod(be.ctx, dst, src, C.size_t(n), be.stream), "cuMemcpyDtoDAsync")
}

// copyHtoD queues a raw host-to-device copy on the copy stream and waits
// for it (the PCIe yardstick in the benchmarks).
func (be *Backend) copyHtoD(dst C.CUdeviceptr, src []byte) error {
	if err := cuErr(C.fm_htod(be.ctx, dst, unsafe.Pointer(&src[0]), C.size_t(len(src)), be.copy), "cuMemcpyHtoDAsync"); err != nil {
		return err
	}
	return cuErr(C.fm_stream_sync(be.ctx, be.copy), "cuStreamSynchronize")
}

// hostTensor is w over pinned host memory, read by kernels in place
// (BenchmarkMatVecInPlace): under unified addressing a pinned allocation's
// host address is its device address, so w's slices must lie in HostAlloc
// memory.
func (be *Backend) hostTensor(w backend.Weight) *tensor {
	at := func(b []byte) C.CUdeviceptr {
		if len(b) == 0 {
			return 0
		}
		return C.CUdeviceptr(uintptr(unsafe.Pointer(&b[0])))
	}
	return be.tensorAt(w, at(w.Data), at(w.Scales), at(w.Biases))
}
