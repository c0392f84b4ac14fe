//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"time"
)

// timeline writes when each stream reached what (FMOE_CUDA_TRACE=FILE,
// benchmarks only): an event after every graph launch and kernel launch,
// before every read-back, before and after every host-to-device copy of a
// weight, and after every wait of the compute stream for such a copy, each
// with the host time it was queued; host-only marks (no event) where the
// host got a read back, queued a small Write, or a caller marked a step of
// its own (MarkHost: runtime/model's CPU share). FILE gets one TSV line a mark at Close, device and
// host microseconds from the first mark. It answers what a profile of
// kernel times cannot: where a layer's streams and the host wait on one
// another. The events are read back in batches (traceFlush), each a sync
// that lets the device catch up, so the host runs ahead between them.
type timeline struct {
	path  string
	base  C.CUevent
	t0    time.Time
	pend  []traceMark
	free  []C.CUevent
	lines []string
	names map[C.CUfunction]string
}

type traceMark struct {
	ev     C.CUevent // nil: a host-only mark
	host   time.Duration
	stream byte // 'c' compute, 'x' copy, 'h' host
	label  string
	arg    int
}

const (
	traceFlush = 4096
	traceKeep  = 400_000 // lines kept (the last ones)
)

func timelineFromEnv() *timeline {
	p := os.Getenv("FMOE_CUDA_TRACE")
	if p == "" {
		return nil
	}
	return &timeline{path: p, names: map[C.CUfunction]string{}}
}

// markLaunch marks a kernel launch by the kernel's name.
func (be *Backend) markLaunch(f C.CUfunction) error {
	tl := be.trace
	if tl == nil || be.recording {
		return nil
	}
	return be.mark('c', kernelName(tl.names, f), 0)
}

// MarkHost records a host-only mark under FMOE_CUDA_TRACE (nothing
// without it): a caller's own steps beside the streams' marks, such as
// runtime/model's CPU share of the experts.
func (be *Backend) MarkHost(label string, arg int) {
	// Its only error, a failed sync while the timeline flushes, is the
	// device's, and the caller's next op meets it.
	_ = be.mark('h', label, arg)
}

// mark records label on stream s ('c' or 'x'; 'h': the host alone).
// Nothing while a graph is recorded: an event there would be a node.
func (be *Backend) mark(s byte, label string, arg int) error {
	tl := be.trace
	if tl == nil || be.recording {
		return nil
	}
	if tl.base == nil {
		if err := cuErr(C.fm_event_create(be.ctx, &tl.base, 0), "cuEventCreate"); err != nil {
			return err
		}
		if err := cuErr(C.fm_event_record(be.ctx, tl.base, be.stream), "cuEventRecord"); err != nil {
			return err
		}
		tl.t0 = time.Now()
	}
	m := traceMark{host: time.Since(tl.t0), stream: s, label: label, arg: arg}
	if s != 'h' {
		var err error
		if m.ev, err = be.reuseEvent(&tl.free); err != nil {
			return err
		}
		st := be.stream
		if s == 'x' {
			st = be.cs
			if st == be.pcopy {
				m.stream = 'p' // the prefetches' own copy stream
			}
		}
		if err := cuErr(C.fm_event_record(be.ctx, m.ev, st), "cuEventRecord"); err != nil {
			return err
		}
	}
	tl.pend = append(tl.pend, m)
	if len(tl.pend) >= traceFlush {
		return be.flushTrace()
	}
	return nil
}

// flushTrace waits for the pending marks' events and turns them into lines.
func (be *Backend) flushTrace() error {
	tl := be.trace
	if tl == nil || len(tl.pend) == 0 {
		return nil
	}
	for _, m := range tl.pend {
		if m.ev != nil {
			if err := cuErr(C.fm_event_sync(be.ctx, m.ev), "cuEventSynchronize"); err != nil {
				return err
			}
		}
	}
	for _, m := range tl.pend {
		dev := -1.0
		if m.ev != nil {
			var ms C.float
			if err := cuErr(C.fm_event_elapsed(be.ctx, &ms, tl.base, m.ev), "cuEventElapsedTime"); err != nil {
				return err
			}
			dev = 1e3 * float64(ms)
			tl.free = append(tl.free, m.ev)
		}
		tl.lines = append(tl.lines, fmt.Sprintf("%.1f\t%.1f\t%c\t%s\t%d", dev, float64(m.host)/1e3, m.stream, m.label, m.arg))
	}
	if n := len(tl.lines); n > traceKeep {
		tl.lines = append(tl.lines[:0], tl.lines[n-traceKeep:]...)
	}
	tl.pend = tl.pend[:0]
	return nil
}

// closeTrace writes the timeline (Close, after Sync) and frees its events.
func (be *Backend) closeTrace() error {
	tl := be.trace
	if tl == nil {
		return nil
	}
	err := be.flushTrace()
	if err == nil {
		err = writeLines(tl.path, "dev_us\thost_us\tstream\tlabel\targ", tl.lines)
	}
	for _, e := range tl.free {
		C.fm_event_destroy(be.ctx, e)
	}
	if tl.base != nil {
		C.fm_event_destroy(be.ctx, tl.base)
	}
	be.trace = nil
	return err
}

// writeLines writes header and lines to path through a temporary name.
func writeLines(path, header string, lines []string) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, header)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
