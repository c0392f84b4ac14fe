//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Bind streams routed experts: each bound weight gets a device slot (reused
// across Bind/Release by size), filled on the copy stream. The compute
// stream waits for the copy's event before the ops that follow, and the
// copy into a reused slot waits for the event Release recorded after the
// slot's last use, so the copy of expert e+1 overlaps the compute of e.

// slot is a reusable device area for one bound weight.
type slot struct {
	ptr   C.CUdeviceptr
	size  int
	ready C.CUevent // copy into the slot done (copy stream)
	free  C.CUevent // last use of the slot done (compute stream)
	// freeOn: the event a fill waits for, nil before the slot's first
	// use: free once recorded, or (FMOE_CUDA_EVICT=layer) the victim's
	// layer's end of reads (evictlayer.go).
	freeOn C.CUevent
	// unwaited: its last copy was a prefetch's that no compute has
	// waited for (prefetch.go), so a compute sync does not imply it.
	unwaited bool
}

func (s *slot) destroy(be *Backend) {
	C.fm_event_destroy(be.ctx, s.ready)
	C.fm_event_destroy(be.ctx, s.free)
}

func (be *Backend) allSlots() []*slot {
	var all []*slot
	for _, l := range be.slots {
		all = append(all, l...)
	}
	return all
}

func (be *Backend) getSlot(size int) (*slot, error) {
	if l := be.slots[size]; len(l) > 0 {
		s := l[len(l)-1]
		be.slots[size] = l[:len(l)-1]
		return s, nil
	}
	return be.newSlot(size)
}

// newSlot allocates a slot of size bytes with its events.
func (be *Backend) newSlot(size int) (*slot, error) {
	p, err := be.devAlloc(size)
	if err != nil {
		return nil, err
	}
	s := &slot{ptr: p, size: size}
	if err := cuErr(C.fm_event_create(be.ctx, &s.ready, eventDisableTiming), "cuEventCreate"); err != nil {
		return nil, errors.Join(err, be.devFree(p))
	}
	if err := cuErr(C.fm_event_create(be.ctx, &s.free, eventDisableTiming), "cuEventCreate"); err != nil {
		C.fm_event_destroy(be.ctx, s.ready)
		return nil, errors.Join(err, be.devFree(p))
	}
	return s, nil
}

// stage is one pinned chunk of the staging ring.
type stage struct {
	host unsafe.Pointer
	ev   C.CUevent // its last DMA done
	used bool
}

const (
	stageChunk = 1 << 20
	stageCount = 8
)

// newStage allocates n pinned bytes and the event of their last DMA.
func (be *Backend) newStage(n int) (*stage, error) {
	st := &stage{}
	if err := cuErr(C.fm_host_alloc(be.ctx, &st.host, C.size_t(n)), "cuMemHostAlloc"); err != nil {
		return nil, err
	}
	if err := cuErr(C.fm_event_create(be.ctx, &st.ev, eventDisableTiming), "cuEventCreate"); err != nil {
		C.fm_host_free(be.ctx, st.host)
		return nil, err
	}
	return st, nil
}

func (st *stage) destroy(be *Backend) {
	C.fm_event_destroy(be.ctx, st.ev)
	C.fm_host_free(be.ctx, st.host)
}

func (be *Backend) nextStage() (*stage, error) {
	if len(be.stages) < stageCount {
		st, err := be.newStage(stageChunk)
		if err != nil {
			return nil, err
		}
		be.stages = append(be.stages, st)
		return st, nil
	}
	st := be.stages[be.stageAt]
	be.stageAt = (be.stageAt + 1) % len(be.stages)
	if st.used {
		if err := cuErr(C.fm_event_sync(be.ctx, st.ev), "cuEventSynchronize"); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// hostRegion is a HostAlloc allocation; huge: from fm_host_alloc_huge.
type hostRegion struct {
	p    unsafe.Pointer
	size int
	huge bool
}

// free returns the region to the driver (and, huge, to the kernel).
func (r hostRegion) free(ctx C.CUcontext) error {
	if r.huge {
		return cuErr(C.fm_host_free_huge(ctx, r.p, C.size_t(r.size)), "cuMemHostUnregister")
	}
	return cuErr(C.fm_host_free(ctx, r.p), "cuMemFreeHost")
}

// HostAlloc returns n bytes of pinned (page-locked) host memory. Weights
// read into it (pread of an expert) are bound by one DMA with no staging
// copy. Free it with HostFree; Close frees what is left.
func (be *Backend) HostAlloc(n int) ([]byte, error) {
	if be.closed {
		return nil, errClosed
	}
	if n <= 0 {
		return nil, fmt.Errorf("cuda: host alloc of %d bytes", n)
	}
	var p unsafe.Pointer
	if be.hostHuge {
		// The experiment (FMOE_CUDA_HOST_HUGE=1): pinned memory on
		// transparent huge pages, for the CPUs that compute a share of
		// the experts from the host tier (docs/gpu-decode.md, session 29).
		if err := cuErr(C.fm_host_alloc_huge(be.ctx, &p, C.size_t(n)), "cuMemHostRegister"); err != nil {
			return nil, err
		}
		be.pinned = append(be.pinned, hostRegion{p, n, true})
		return unsafe.Slice((*byte)(p), n), nil
	}
	if err := cuErr(C.fm_host_alloc(be.ctx, &p, C.size_t(n)), "cuMemHostAlloc"); err != nil {
		return nil, err
	}
	be.pinned = append(be.pinned, hostRegion{p, n, false})
	return unsafe.Slice((*byte)(p), n), nil
}

// HostFree frees memory from HostAlloc; b must be the slice it returned.
func (be *Backend) HostFree(b []byte) error {
	if be.closed {
		return errClosed
	}
	for i, r := range be.pinned {
		if len(b) > 0 && unsafe.Pointer(&b[0]) == r.p {
			if err := be.Sync(); err != nil {
				return err
			}
			be.pinned = append(be.pinned[:i], be.pinned[i+1:]...)
			return r.free(be.ctx)
		}
	}
	return errors.New("cuda: HostFree of memory not from HostAlloc")
}

func (be *Backend) isPinned(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	lo := uintptr(unsafe.Pointer(&b[0]))
	hi := lo + uintptr(len(b))
	for _, r := range be.pinned {
		if p := uintptr(r.p); lo >= p && hi <= p+uintptr(r.size) {
			return true
		}
	}
	return false
}

// Bind copies the weight to a device slot on the copy stream and returns
// at once (after staging, for pageable memory).
func (be *Backend) Bind(w backend.Weight) (backend.Tensor, error) {
	if be.closed {
		return nil, errClosed
	}
	if err := checkWeight(w); err != nil {
		return nil, err
	}
	_, _, size := layout(w)
	s, err := be.getSlot(size)
	if err != nil {
		return nil, err
	}
	t, err := be.fill(s, w, true)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// fill queues the copy of w into slot s on the copy stream, after the
// slot's last use, and, with wait, makes the compute stream wait for it
// (a prefetch leaves that to its entry's first use).
func (be *Backend) fill(s *slot, w backend.Weight, wait bool) (*tensor, error) {
	so, bo, _ := layout(w)
	if err := be.fillStart(s, wait); err != nil {
		return nil, err
	}
	direct := true
	if span := hostSpan(w, so, bo); span != nil && be.isPinned(span) {
		// The parts lie in pinned memory as they will on the device (a
		// pack's expert layout): one DMA instead of three.
		if _, err := be.copyIn(s.ptr, span); err != nil {
			return nil, err
		}
	} else {
		for _, part := range []struct {
			off int
			b   []byte
		}{{0, w.Data}, {so, w.Scales}, {bo, w.Biases}} {
			ok, err := be.copyIn(s.ptr+C.CUdeviceptr(part.off), part.b)
			if err != nil {
				return nil, err
			}
			direct = direct && ok
		}
	}
	if err := be.fillEnd(s, wait); err != nil {
		return nil, err
	}
	return be.slotTensor(s, w, 0, direct), nil
}

// fillSpan is fill for a whole expert lying in pinned memory as it will on
// the device (expertSpan): one DMA into s.
func (be *Backend) fillSpan(s *slot, span []byte, wait bool) error {
	if err := be.fillStart(s, wait); err != nil {
		return err
	}
	if _, err := be.copyIn(s.ptr, span); err != nil {
		return err
	}
	return be.fillEnd(s, wait)
}

// fillStart orders a fill's copies after the slot's last use.
func (be *Backend) fillStart(s *slot, wait bool) error {
	if be.recording {
		return errRecording
	}
	if s.freeOn != nil {
		if err := cuErr(C.fm_stream_wait(be.ctx, be.cs, s.freeOn), "cuStreamWaitEvent"); err != nil {
			return err
		}
	}
	return be.mark('x', "cp0", traceArg(wait))
}

// fillEnd records a fill's end and, with wait, makes the compute stream
// wait for it.
func (be *Backend) fillEnd(s *slot, wait bool) error {
	if err := cuErr(C.fm_event_record(be.ctx, s.ready, be.cs), "cuEventRecord"); err != nil {
		return err
	}
	if err := be.mark('x', "cp1", traceArg(wait)); err != nil {
		return err
	}
	if s.unwaited = !wait; wait {
		if err := cuErr(C.fm_stream_wait(be.ctx, be.stream, s.ready), "cuStreamWaitEvent"); err != nil {
			return err
		}
		return be.mark('c', "cpwait", 0)
	}
	return nil
}

// traceArg is a copy's mark: 1 a copy the compute waits for, 0 a prefetch's.
func traceArg(wait bool) int {
	if wait {
		return 1
	}
	return 0
}

// slotTensor is w bound at offset off of slot s.
func (be *Backend) slotTensor(s *slot, w backend.Weight, off int, direct bool) *tensor {
	t := be.newTensor(w, s.ptr+C.CUdeviceptr(off))
	t.bound, t.slot, t.direct = true, s, direct
	return t
}

// expertSpan is the host bytes of an expert's weights when they lie in
// pinned memory one after another, each as it lies on the device
// (hostSpan) and at a 256-byte offset past the one before's device
// extent, as a pack lays out an expert: then one DMA copies them all
// (offs: each weight's offset in the span). nil with fewer than two
// weights or any other layout.
func (be *Backend) expertSpan(ws []backend.Weight) (span []byte, offs []int) {
	if len(ws) < 2 || be.spanOff {
		return nil, nil
	}
	offs = make([]int, len(ws))
	end, n := 0, 0
	for i, w := range ws {
		so, bo, size := layout(w)
		hs := hostSpan(w, so, bo)
		if hs == nil {
			return nil, nil
		}
		off := int(uintptr(unsafe.Pointer(&hs[0])) - uintptr(unsafe.Pointer(&ws[0].Data[0])))
		if off < end || off%256 != 0 {
			return nil, nil
		}
		offs[i], end, n = off, off+size, off+len(hs)
	}
	span = unsafe.Slice((*byte)(unsafe.Pointer(&ws[0].Data[0])), n)
	if !be.isPinned(span) {
		return nil, nil
	}
	return span, offs
}

// readStagedMin is the size from which Read goes through pinned staging:
// a copy to pageable memory runs through the driver's own buffers at a
// fraction of the link's rate, and a decode step reads a vocabulary's
// logits (1 MB for Qwen3.5) every token.
const readStagedMin = 256 << 10

// readStaged copies n floats at src to dst through two pinned chunks in
// turn: chunk i+1's copy runs while chunk i is copied out on the host.
// The stream is drained before it returns, as by Read.
func (be *Backend) readStaged(dst []float32, src C.CUdeviceptr) error {
	out := unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*len(dst))
	for k := range be.rstages {
		if be.rstages[k] != nil {
			continue
		}
		st, err := be.newStage(stageChunk)
		if err != nil {
			return err
		}
		be.rstages[k] = st
	}
	var at [2]int // the offset each chunk holds, -1: none
	at[0], at[1] = -1, -1
	drain := func(k int) error {
		if at[k] < 0 {
			return nil
		}
		st := be.rstages[k]
		if err := cuErr(C.fm_event_sync(be.ctx, st.ev), "cuEventSynchronize"); err != nil {
			return err
		}
		n := min(stageChunk, len(out)-at[k])
		copy(out[at[k]:at[k]+n], unsafe.Slice((*byte)(st.host), n))
		at[k] = -1
		return nil
	}
	k := 0
	for off := 0; off < len(out); off += stageChunk {
		if err := drain(k); err != nil {
			return err
		}
		st, n := be.rstages[k], min(stageChunk, len(out)-off)
		if err := cuErr(C.fm_dtoh_async(be.ctx, st.host, src+C.CUdeviceptr(off), C.size_t(n), be.stream), "read"); err != nil {
			return err
		}
		if err := cuErr(C.fm_event_record(be.ctx, st.ev, be.stream), "cuEventRecord"); err != nil {
			return err
		}
		at[k], k = off, 1-k
	}
	// The older chunk first, then the newer; then nothing is in flight.
	if err := drain(k); err != nil {
		return err
	}
	if err := drain(1 - k); err != nil {
		return err
	}
	return cuErr(C.fm_stream_sync(be.ctx, be.stream), "cuStreamSynchronize")
}

// hostSpan is the host bytes from w's data to the end of its biases when
// its scales and biases start at so and bo past its data, the offsets
// they take on the device; nil otherwise (or with no scales or biases).
func hostSpan(w backend.Weight, so, bo int) []byte {
	if len(w.Data) == 0 || len(w.Scales) == 0 || len(w.Biases) == 0 {
		return nil
	}
	base := unsafe.Pointer(&w.Data[0])
	if unsafe.Pointer(&w.Scales[0]) != unsafe.Add(base, so) || unsafe.Pointer(&w.Biases[0]) != unsafe.Add(base, bo) {
		return nil
	}
	return unsafe.Slice((*byte)(base), bo+len(w.Biases))
}

// copyIn queues the copy of b to dst on the copy stream: one DMA from
// pinned memory (reported as direct), else through the staging ring.
func (be *Backend) copyIn(dst C.CUdeviceptr, b []byte) (direct bool, err error) {
	if len(b) == 0 {
		return true, nil
	}
	if be.isPinned(b) {
		return true, cuErr(C.fm_htod(be.ctx, dst, unsafe.Pointer(&b[0]), C.size_t(len(b)), be.cs), "bind copy")
	}
	for off := 0; off < len(b); off += stageChunk {
		n := min(stageChunk, len(b)-off)
		st, err := be.nextStage()
		if err != nil {
			return false, err
		}
		copy(unsafe.Slice((*byte)(st.host), n), b[off:off+n])
		if err := cuErr(C.fm_htod(be.ctx, dst+C.CUdeviceptr(off), st.host, C.size_t(n), be.cs), "bind copy"); err != nil {
			return false, err
		}
		if err := cuErr(C.fm_event_record(be.ctx, st.ev, be.cs), "cuEventRecord"); err != nil {
			return false, err
		}
		st.used = true
	}
	return false, nil
}

// Release returns the tensor's slot for reuse once the ops queued so far
// are done with it. For a direct (pinned) bind it first waits for the
// copy, since the caller may then overwrite the host bytes.
func (be *Backend) Release(t backend.Tensor) error {
	if be.closed {
		return errClosed
	}
	x, ok := t.(*tensor)
	if !ok || x.be != be {
		return fmt.Errorf("cuda: release of %T, not a tensor of this CUDA backend", t)
	}
	if !x.bound {
		return errors.New("cuda: release of a registered (resident) tensor")
	}
	if x.released {
		return errors.New("cuda: tensor released twice")
	}
	x.released = true
	s := x.slot
	if x.direct {
		if err := cuErr(C.fm_event_sync(be.ctx, s.ready), "cuEventSynchronize"); err != nil {
			return err
		}
	}
	x.slot = nil
	if x.entry != nil {
		// The slot stays the cache's; evict records its last use, once,
		// rather than every hit here (a driver call per tensor).
		x.entry.pins--
		if x.entry.dropped && x.entry.pins == 0 {
			be.freeDropped(x.entry)
		}
		// Its kernels are queued: a read of its layer.
		return be.readQueued(x.entry.key.Layer)
	}
	if err := cuErr(C.fm_event_record(be.ctx, s.free, be.stream), "cuEventRecord"); err != nil {
		return err
	}
	s.freeOn = s.free
	be.slots[s.size] = append(be.slots[s.size], s)
	return nil
}
