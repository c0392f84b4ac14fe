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

var _ backend.AsyncReader = (*Backend)(nil)

// asyncRead is the one outstanding ReadAsync: a pinned buffer the copy
// lands in (pageable memory would make the copy wait for the stream) and
// the event after it.
type asyncRead struct {
	st      *stage
	pending bool
}

// ReadAsync queues src's first len(dst) values into pinned memory on the
// compute stream (by DMA, or by read_mapped: readmapped.go), after the
// work queued so far, and records an event; wait syncs on that event
// alone, so the kernels queued after the call run meanwhile, and then
// copies the values out.
func (be *Backend) ReadAsync(dst []float32, src backend.Buffer) (func() error, error) {
	if be.closed {
		return nil, errClosed
	}
	s, err := be.data(src, "read")
	if err != nil {
		return nil, err
	}
	if err := be.chk.Read(len(dst), s.n); err != nil {
		return nil, err
	}
	if len(dst) == 0 || len(dst) > backend.MaxAsyncRead {
		return nil, fmt.Errorf("cuda: async read of %d values: want 1 to %d", len(dst), backend.MaxAsyncRead)
	}
	if be.recording {
		return nil, errRecording
	}
	ar := &be.aread
	if ar.pending {
		return nil, errors.New("cuda: async read while another is outstanding")
	}
	if ar.st == nil {
		st, err := be.newStage(4 * backend.MaxAsyncRead)
		if err != nil {
			return nil, err
		}
		ar.st = st
	}
	if err := be.mark('c', "read", len(dst)); err != nil {
		return nil, err
	}
	n := 4 * len(dst)
	if err := be.queueRead(ar.st, s.ptr, len(dst)); err != nil {
		return nil, err
	}
	if err := cuErr(C.fm_event_record(be.ctx, ar.st.ev, be.stream), "cuEventRecord"); err != nil {
		return nil, err
	}
	ar.pending = true
	return func() error {
		if !ar.pending {
			return errors.New("cuda: async read waited for twice")
		}
		ar.pending = false
		if be.closed {
			return errClosed
		}
		if err := cuErr(C.fm_event_sync(be.ctx, ar.st.ev), "cuEventSynchronize"); err != nil {
			return err
		}
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), n), unsafe.Slice((*byte)(ar.st.host), n))
		return be.mark('h', "readret", 0)
	}, nil
}
