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
// pick, the step's status) go by DMA into pinned memory; with
// FMOE_CUDA_READ=mapped (an experiment, measured no faster: run 28) a
// kernel writes them there instead (read_mapped, route_cuda.h), its
// stores taking no copy engine, and a small Copy (the ids a predicting
// partly held layer copies beside its prediction, in the layer's graph)
// is the same kernel between device addresses. Session 31 built it on a
// misreading of run 27's timeline: the 41-48 µs after a read's mark were
// the held experts' graph, whose mark is its end, not the read's DMA.

// readMappedOn reports whether FMOE_CUDA_READ=mapped asks for kernel reads.
func readMappedOn() bool { return os.Getenv("FMOE_CUDA_READ") == "mapped" }

// mappedThreads is read_mapped's block: one block, looping past it.
const mappedThreads = 256

// queueRead queues n values at src into st's pinned memory on the compute
// stream, after the work queued so far.
func (be *Backend) queueRead(st *stage, src C.CUdeviceptr, n int) error {
	if !be.readMapped {
		return cuErr(C.fm_dtoh_async(be.ctx, st.host, src, C.size_t(4*n), be.stream), "read")
	}
	return be.copyWords(C.CUdeviceptr(uintptr(st.host)), src, n)
}

// copyWords queues read_mapped: n words from src to dst, device or pinned
// host memory (unified addressing), on the compute stream.
func (be *Backend) copyWords(dst, src C.CUdeviceptr, n int) error {
	a := &be.args
	a.reset()
	a.ptr(dst).ptr(src).i32(n)
	return be.launch(be.batch.readMapped, 1, 1, min(mappedThreads, (n+31)/32*32), 0)
}

// readSmall is Read for at most MaxAsyncRead values with readMapped:
// queued into pinned memory of its own (sread), then the stream is
// synchronised (every earlier op done, as Read promises) and the values
// copied out.
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

// The host's small uploads (a batch's job table, the params of an op, an
// expert's index entry, a small Write) may pass the same way in the other
// direction (FMOE_CUDA_UPLOAD=mapped, an experiment, measured no faster: run 28):
// copied into pinned memory, then moved by write_mapped, whose loads cross
// the link without a copy engine, where a DMA upload on the compute stream
// may queue behind a miss's or a prefetch's copy.

// uploadMappedOn reports whether FMOE_CUDA_UPLOAD=mapped asks for it.
func uploadMappedOn() bool { return os.Getenv("FMOE_CUDA_UPLOAD") == "mapped" }

// upRing is the pinned memory the mapped uploads pass through: up to
// upSlots chunks used in turn. Leaving a chunk records its event after the
// kernels queued so far, so that coming back to it waits only for those
// that read it.
type upRing struct {
	st  []*stage
	at  int // the chunk in use
	off int // its bytes taken
}

const (
	upChunk = 64 << 10
	upSlots = 4
)

// h2dSmall copies b to dst on the compute stream, after the work queued
// so far: through the pinned ring and write_mapped where upMapped asks and
// b fits a chunk, else by DMA (from pageable memory: the driver has copied
// b when it returns).
func (be *Backend) h2dSmall(dst C.CUdeviceptr, b []byte, what string) error {
	if len(b) == 0 {
		return nil
	}
	if !be.upMapped || len(b) > upChunk {
		return cuErr(C.fm_htod(be.ctx, dst, unsafe.Pointer(&b[0]), C.size_t(len(b)), be.stream), what)
	}
	src, err := be.upSpace(len(b))
	if err != nil {
		return err
	}
	copy(unsafe.Slice((*byte)(src), len(b)), b)
	a := &be.args
	a.reset()
	a.ptr(dst).ptr(C.CUdeviceptr(uintptr(src))).i32(len(b))
	return be.launchNow(be.batch.writeMapped, 1, 1, min(mappedThreads, (len(b)+31)/32*32), 0)
}

// upSpace takes n bytes (16-aligned) of the ring's chunk in use, moving to
// the next chunk (allocated on first use, else waited for) when it is full.
func (be *Backend) upSpace(n int) (unsafe.Pointer, error) {
	r := &be.up
	if len(r.st) == 0 || r.off+n > upChunk {
		if len(r.st) > 0 {
			cur := r.st[r.at]
			if err := cuErr(C.fm_event_record(be.ctx, cur.ev, be.stream), "cuEventRecord"); err != nil {
				return nil, err
			}
			cur.used = true
			r.at = (r.at + 1) % upSlots
		}
		if r.at == len(r.st) {
			st, err := be.newStage(upChunk)
			if err != nil {
				return nil, err
			}
			r.st = append(r.st, st)
		} else if st := r.st[r.at]; st.used {
			if err := cuErr(C.fm_event_sync(be.ctx, st.ev), "cuEventSynchronize"); err != nil {
				return nil, err
			}
			st.used = false
		}
		r.off = 0
	}
	p := unsafe.Add(r.st[r.at].host, r.off)
	r.off += (n + 15) &^ 15
	return p, nil
}

// closeRing frees the ring's chunks (Close).
func (be *Backend) closeRing() {
	for _, st := range be.up.st {
		st.destroy(be)
	}
	be.up = upRing{}
}
