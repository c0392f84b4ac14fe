//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"errors"

	"github.com/fmoe/fmoe/runtime/backend"
)

var _ backend.LinkPacer = (*Backend)(nil)

// LinkIdle reports whether the copy streams (the misses' and, with
// Options.PrefetchStream, the prefetches') have nothing unfinished. A
// copy stream also waits for evicted slots' last reads, so a link idle
// behind such a wait reads as busy: the pace then issues a little late,
// never early.
func (be *Backend) LinkIdle() (bool, error) {
	if be.closed {
		return false, errClosed
	}
	for _, s := range []C.CUstream{be.copy, be.pcopy} {
		if s == nil {
			continue
		}
		if done, err := reached(C.fm_stream_query(be.ctx, s), "cuStreamQuery"); !done || err != nil {
			return false, err
		}
	}
	return true, nil
}

// ReadReady reports whether the outstanding ReadAsync's copy has landed.
func (be *Backend) ReadReady() (bool, error) {
	if be.closed {
		return false, errClosed
	}
	ar := &be.aread
	if !ar.pending {
		return false, errors.New("cuda: ReadReady without an outstanding ReadAsync")
	}
	return reached(C.fm_event_query(be.ctx, ar.st.ev), "cuEventQuery")
}
