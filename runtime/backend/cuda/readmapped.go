//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"os"
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend"
)

// The host's small reads (a partly held layer's routed ids, a greedy
// pick, the step's status) are written by a kernel straight into pinned
// host memory (read_mapped, route_cuda.h) rather than copied by DMA. Run
// 27's timeline of the tiered K=4 layer had the compute stream spend 41-48
// µs on a 16-byte cuMemcpyDtoHAsync, the kernels queued after it waiting,
// while a prefetch's copy crossed the link the other way: a DMA read takes
// its turn on a copy engine, the SMs' stores do not. FMOE_CUDA_READ=copy
// keeps the DMA (to compare).

// readCopyOn reports whether FMOE_CUDA_READ=copy asks for DMA reads.
func readCopyOn() bool { return os.Getenv("FMOE_CUDA_READ") == "copy" }

// mappedThreads is read_mapped's block: one block, looping past it.
const mappedThreads = 256

// queueRead queues n values at src into st's pinned memory on the compute
// stream, after the work queued so far.
func (be *Backend) queueRead(st *stage, src C.CUdeviceptr, n int) error {
	if be.readCopy {
		return cuErr(C.fm_dtoh_async(be.ctx, st.host, src, C.size_t(4*n), be.stream), "read")
	}
	a := &be.args
	a.reset()
	a.ptr(C.CUdeviceptr(uintptr(st.host))).ptr(src).i32(n)
	return be.launch(be.batch.readMapped, 1, 1, min(mappedThreads, (n+31)/32*32), 0)
}

// readSmall is Read for at most MaxAsyncRead values: queued into pinned
// memory of its own (sread), then the stream is synchronised (every earlier
// op done, as Read promises) and the values copied out.
func (be *Backend) readSmall(dst []float32, src C.CUdeviceptr) error {
	if be.sread == nil {
		st, err := be.newStage(4 * backend.MaxAsyncRead)
		if err != nil {
			return err
		}
		be.sread = st
	}
	if err := be.queueRead(be.sread, src, len(dst)); err != nil {
		return err
	}
	if err := cuErr(C.fm_stream_sync(be.ctx, be.stream), "cuStreamSynchronize"); err != nil {
		return err
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*len(dst)), unsafe.Slice((*byte)(be.sread.host), 4*len(dst)))
	return nil
}
