//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"errors"
	"time"
)

// stamps are points of a step timed on the device's own clock (Stamp,
// Stamps; benchmarks): an event recorded on the compute stream at each,
// read back once the step is over, so that no sync falls inside it. A
// layer's time is then the device's from the end of the work queued
// before it to the end of its own, its waits for copies and for the host
// included: what a token's wall time is made of, which a profile of
// kernels does not say.
type stamps struct {
	pend, free []C.CUevent
}

// Stamp records when the device has run the work queued so far.
func (be *Backend) Stamp() error {
	if be.recording {
		// An event record there would be a node of the graph.
		return errors.New("cuda: Stamp while a graph is recorded")
	}
	st := &be.stamps
	ev, err := be.reuseEvent(&st.free)
	if err != nil {
		return err
	}
	if err := cuErr(C.fm_event_record(be.ctx, ev, be.stream), "cuEventRecord"); err != nil {
		st.free = append(st.free, ev)
		return err
	}
	st.pend = append(st.pend, ev)
	return nil
}

// Stamps waits for the stamps since the last call and appends to dst each
// one's device time after the first of them (so the first is 0); the
// stamps are then spent.
func (be *Backend) Stamps(dst []time.Duration) ([]time.Duration, error) {
	st := &be.stamps
	if len(st.pend) == 0 {
		return dst, nil
	}
	defer func() { st.free, st.pend = append(st.free, st.pend...), st.pend[:0] }()
	if err := cuErr(C.fm_event_sync(be.ctx, st.pend[len(st.pend)-1]), "cuEventSynchronize"); err != nil {
		return dst, err
	}
	for _, ev := range st.pend {
		var ms C.float
		if err := cuErr(C.fm_event_elapsed(be.ctx, &ms, st.pend[0], ev), "cuEventElapsedTime"); err != nil {
			return dst, err
		}
		dst = append(dst, time.Duration(float64(ms)*float64(time.Millisecond)))
	}
	return dst, nil
}

// destroyStamps frees the stamps' events (Close).
func (be *Backend) destroyStamps() {
	st := &be.stamps
	for _, ev := range append(st.free, st.pend...) {
		C.fm_event_destroy(be.ctx, ev)
	}
	st.free, st.pend = nil, nil
}
