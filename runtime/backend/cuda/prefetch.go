//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"errors"
	"fmt"

	"github.com/fmoe/fmoe/runtime/backend"
)

// A prefetch (backend.ExpertPrefetcher) is an admission whose copies the
// compute stream does not wait for: the entry is pending until its first
// CachedExpert, which makes the compute stream wait for its slots' copies
// and enters it in the device index (a device-routed layer must not find
// its pointers before its bytes). Until then it is an ordinary entry not
// in use: the policy may evict it, and its slots' next copy is ordered
// after this one on the copy stream. The caller's host bytes are read
// until the event PrefetchDone polls.

var _ backend.ExpertPrefetcher = (*Backend)(nil)

// prefetches are the events of copies in flight, by token.
type prefetches struct {
	ev   map[int]C.CUevent
	free []C.CUevent
	next int
	// noSpare: a prefetch may evict its own layer's prefetches still in
	// flight (FMOE_CUDA_PF_SPARE=0, to measure against); inFlight, when
	// set, replaces the query of a copy's event (tests).
	noSpare  bool
	inFlight func(e *centry) bool
}

// PrefetchExpert queues expert (layer, id)'s copy into the cache (see
// backend.ExpertPrefetcher).
func (be *Backend) PrefetchExpert(layer, id int, ws []backend.Weight) (int, bool, error) {
	if be.closed {
		return 0, false, errClosed
	}
	if be.recording {
		return 0, false, errRecording
	}
	for _, w := range ws {
		if err := checkWeight(w); err != nil {
			return 0, false, err
		}
	}
	// The event first: once the copy is queued, every way out must leave
	// the caller knowing when its bytes are free.
	ev, err := be.prefetchEvent()
	if err != nil {
		return 0, false, err
	}
	if be.pcopy != nil {
		// After the misses' copies queued so far, which the step waits
		// for; a miss's copy queued later shares the link with this one.
		if err := be.orderAfterCopies(ev); err != nil {
			be.pf.free = append(be.pf.free, ev)
			return 0, false, err
		}
		be.cs = be.pcopy
		defer func() { be.cs = be.copy }()
	}
	e, _, err := be.admit(ExpertKey{layer, id}, ws, false)
	if err == nil && e != nil {
		e.pending = true
		err = cuErr(C.fm_event_record(be.ctx, ev, be.cs), "cuEventRecord")
	}
	if err != nil || e == nil {
		be.pf.free = append(be.pf.free, ev)
		if err != nil {
			// A copy may be queued: it ends before the caller's bytes go back.
			err = errors.Join(err, be.syncCopies())
		}
		return 0, false, err
	}
	p := &be.pf
	if p.ev == nil {
		p.ev = map[int]C.CUevent{}
	}
	p.next++
	p.ev[p.next] = ev
	return p.next, true, nil
}

// PrefetchPending reports whether (layer, id) is a prefetched entry not yet
// settled (and so not in the device index).
func (be *Backend) PrefetchPending(layer, id int) bool {
	if be.cache == nil {
		return false
	}
	e := be.cache.m[ExpertKey{layer, id}]
	return e != nil && e.pending
}

var _ backend.PrefetchSettler = (*Backend)(nil)

// SettleLanded settles (layer, id) where it is a prefetch whose copies
// have ended (the compute stream's wait for them is then free): into the
// device index, where the next kernels that read it find it. No use is
// counted: the policy sees the expert when a step picks it.
func (be *Backend) SettleLanded(layer, id int) (bool, error) {
	c := be.cache
	if be.closed || be.recording || c == nil {
		return false, nil
	}
	e := c.m[ExpertKey{layer, id}]
	if e == nil || !e.pending {
		return false, nil
	}
	for _, s := range e.slots {
		if done, err := reached(C.fm_event_query(be.ctx, s.ready), "cuEventQuery"); !done || err != nil {
			return false, err
		}
	}
	if err := be.settle(e); err != nil {
		return false, err // e is forgotten: a later pick of it is a miss
	}
	return true, nil
}

// PrefetchDone reports whether prefetch tok's copy has ended.
func (be *Backend) PrefetchDone(tok int, wait bool) (bool, error) {
	if be.closed {
		return false, errClosed
	}
	p := &be.pf
	ev, ok := p.ev[tok]
	if !ok {
		return false, fmt.Errorf("cuda: prefetch %d unknown or already reported done", tok)
	}
	if wait {
		if err := cuErr(C.fm_event_sync(be.ctx, ev), "cuEventSynchronize"); err != nil {
			return false, err
		}
	} else if done, err := reached(C.fm_event_query(be.ctx, ev), "cuEventQuery"); !done || err != nil {
		return false, err
	}
	delete(p.ev, tok)
	p.free = append(p.free, ev)
	return true, nil
}

// cudaNotReady is CUDA_ERROR_NOT_READY: an event not yet reached.
const cudaNotReady = 600

// reached reads a query of an event or a stream: true once reached, false
// while not ready (cudaNotReady), an error naming what for anything else.
func reached(r C.CUresult, what string) (bool, error) {
	switch r {
	case 0:
		return true, nil
	case cudaNotReady:
		return false, nil
	}
	return false, cuErr(r, what)
}

// prefetchEvent is an event for one prefetch: a spent one, or a new one.
func (be *Backend) prefetchEvent() (C.CUevent, error) {
	p := &be.pf
	if n := len(p.free); n > 0 {
		ev := p.free[n-1]
		p.free = p.free[:n-1]
		return ev, nil
	}
	var ev C.CUevent
	err := cuErr(C.fm_event_create(be.ctx, &ev, eventDisableTiming), "cuEventCreate")
	return ev, err
}

// settle ends e's pending state at its first use: the compute stream
// waits for its copies, and the device index takes it. On an error e is
// forgotten, so that the caller binds the expert anew.
func (be *Backend) settle(e *centry) error {
	var err error
	for _, s := range e.slots {
		if err = cuErr(C.fm_stream_wait(be.ctx, be.stream, s.ready), "cuStreamWaitEvent"); err != nil {
			break
		}
		s.unwaited = false
	}
	if err == nil {
		e.pending = false
		err = errors.Join(be.indexKeep(e), be.mark('c', "pfwait", 0))
	}
	if err != nil {
		return errors.Join(err, be.evict(e))
	}
	return nil
}

// destroyPrefetches destroys the prefetch events (Close, after Sync).
func (be *Backend) destroyPrefetches() {
	p := &be.pf
	for _, ev := range p.ev {
		C.fm_event_destroy(be.ctx, ev)
	}
	for _, ev := range p.free {
		C.fm_event_destroy(be.ctx, ev)
	}
	*p = prefetches{}
}

// freeSlots frees cache slots after the work queued on them. Memory is
// freed after a sync of the compute stream (queueFree), which covers a
// copy only once the compute stream has waited for it: a prefetch's copy
// that nothing waited for is waited for here.
func (be *Backend) freeSlots(slots []*slot) error {
	var err error
	for _, s := range slots {
		if s.unwaited {
			err = be.syncCopies()
			break
		}
	}
	for _, s := range slots {
		be.queueFree(s.ptr, s.size)
		s.destroy(be)
	}
	return err
}

// orderAfterCopies makes the prefetch stream wait for the copy stream's
// copies queued so far, by ev (recorded again for the prefetch after).
func (be *Backend) orderAfterCopies(ev C.CUevent) error {
	if err := cuErr(C.fm_event_record(be.ctx, ev, be.copy), "cuEventRecord"); err != nil {
		return err
	}
	return cuErr(C.fm_stream_wait(be.ctx, be.pcopy, ev), "cuStreamWaitEvent")
}

// spared reports whether a prefetch for layer l leaves e alone: e is a
// prefetch for the same layer whose copy is still running, made for the
// same step (a landed one that the step did not use is fair game). The
// policy ranks a new entry lowest, so without this each of a step's
// prefetches would evict the one queued before it.
func (be *Backend) spared(e *centry, l int) bool {
	if be.pf.noSpare || !e.pending || e.key.Layer != l {
		return false
	}
	if f := be.pf.inFlight; f != nil {
		return f(e)
	}
	s := e.slots[len(e.slots)-1]
	return C.fm_event_query(be.ctx, s.ready) == cudaNotReady
}
