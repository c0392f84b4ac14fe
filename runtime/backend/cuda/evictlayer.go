//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"os"
	"slices"
)

// An evicted expert's slots are refilled once their last reader is done.
// By default evict records that point (the slot's free event) when it
// evicts, after everything queued on the compute stream by then, so the
// refill's copy waits for all of it: run 28's timeline has every copy
// start just after the compute stream's latest graph, a waited miss
// after its layer's held experts (27-31 µs on an H100) and a prefetch
// after the next layer's fixed graph (68-76 µs), though the victim's last
// reader had long finished.
//
// With FMOE_CUDA_EVICT=layer (an experiment until measured on a GPU) the
// backend tracks which layer's experts the work it queued reads: queued
// reads of a layer's experts are those of ExpertsIndexed* (through the
// layer's index), of a graph's replay (the layers its recording read) and
// of a cache tensor's kernels (queued before its Release). When the reads
// queued move to another layer, an event of the layer left is recorded on
// the compute stream (after its reads, since every call marks after
// queuing them). A victim of a layer other than the one whose reads were
// queued last then waits for its layer's latest event, recorded after
// every read of it that was queued (a later read would have made its
// layer the current one again); a victim of the current layer, or of a
// layer never left, gets today's event. Waiting on an event recorded again
// later only waits longer, never too little.

// layerReads is that bookkeeping.
type layerReads struct {
	on   bool
	cur  int         // the layer whose reads were queued last (-1: none)
	ends []C.CUevent // a layer's event, recorded when its reads were left; nil: never
	rec  []int       // the layers read while a graph is recorded
}

// evictLayerOn reports whether FMOE_CUDA_EVICT=layer asks for it.
func evictLayerOn() bool { return os.Getenv("FMOE_CUDA_EVICT") == "layer" }

// readQueued notes that reads of layer's experts have just been queued on
// the compute stream (while recording a graph: that the graph reads them).
func (be *Backend) readQueued(layer int) error {
	lr := &be.lreads
	if !lr.on || layer < 0 {
		return nil
	}
	if be.recording {
		if !slices.Contains(lr.rec, layer) {
			lr.rec = append(lr.rec, layer)
		}
		return nil
	}
	if lr.cur >= 0 && lr.cur != layer {
		if err := be.recordLayerEnd(lr.cur); err != nil {
			return err
		}
	}
	lr.cur = layer
	return nil
}

// recordLayerEnd records layer's event after the work queued so far.
func (be *Backend) recordLayerEnd(layer int) error {
	lr := &be.lreads
	if layer >= len(lr.ends) {
		lr.ends = append(lr.ends, make([]C.CUevent, layer+1-len(lr.ends))...)
	}
	if lr.ends[layer] == nil {
		if err := cuErr(C.fm_event_create(be.ctx, &lr.ends[layer], eventDisableTiming), "cuEventCreate"); err != nil {
			lr.ends[layer] = nil
			return err
		}
	}
	return cuErr(C.fm_event_record(be.ctx, lr.ends[layer], be.stream), "cuEventRecord")
}

// lastRead is the event after which no queued work reads layer's experts,
// where one is known without recording a new one.
func (be *Backend) lastRead(layer int) (C.CUevent, bool) {
	lr := &be.lreads
	if !lr.on || layer == lr.cur || layer < 0 || layer >= len(lr.ends) || lr.ends[layer] == nil {
		return nil, false
	}
	return lr.ends[layer], true
}

// graphLayers hands the layers a finished recording read to its graph.
func (be *Backend) graphLayers() []int {
	lr := &be.lreads
	l := slices.Clone(lr.rec)
	lr.rec = lr.rec[:0]
	return l
}

// destroyLayerReads frees the layers' events (Close).
func (be *Backend) destroyLayerReads() {
	lr := &be.lreads
	for _, ev := range lr.ends {
		if ev != nil {
			C.fm_event_destroy(be.ctx, ev)
		}
	}
	lr.ends, lr.cur = nil, -1
}
