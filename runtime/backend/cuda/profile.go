//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// launchProfile times every kernel launch and upload on the compute stream
// between two events, summed by kernel (FMOE_CUDA_PROFILE=1, benchmarks
// only). Graphs are refused while it is on, so each op runs alone and is
// timed alone; the events are read back in batches, not per launch, so the
// host still runs ahead of the device.
type launchProfile struct {
	names map[C.CUfunction]string
	pend  []profMark
	free  []C.CUevent
	stats map[string]*profStat
}

type profMark struct {
	name string
	a, b C.CUevent
}

type profStat struct {
	calls int
	ms    float64
}

// profileFlush bounds the events outstanding between read-backs.
const profileFlush = 2048

var errProfiling = errors.New("cuda: graphs are off while FMOE_CUDA_PROFILE times each launch")

func profileFromEnv() *launchProfile {
	if os.Getenv("FMOE_CUDA_PROFILE") == "" {
		return nil
	}
	return &launchProfile{names: map[C.CUfunction]string{}, stats: map[string]*profStat{}}
}

func (p *launchProfile) name(f C.CUfunction) string { return kernelName(p.names, f) }

// kernelName is f's name (the driver's, where it can say), kept in names
// (a profile's or a timeline's) after the first ask.
func kernelName(names map[C.CUfunction]string, f C.CUfunction) string {
	if n, ok := names[f]; ok {
		return n
	}
	n := fmt.Sprintf("kernel@%p", f)
	if s := C.fm_func_name(f); s != nil {
		n = C.GoString(s)
	}
	names[f] = n
	return n
}

// reuseEvent takes an event from free, the spent events a profile, a
// timeline or the stamps keep, or creates one.
func (be *Backend) reuseEvent(free *[]C.CUevent) (C.CUevent, error) {
	if k := len(*free); k > 0 {
		e := (*free)[k-1]
		*free = (*free)[:k-1]
		return e, nil
	}
	var e C.CUevent
	err := cuErr(C.fm_event_create(be.ctx, &e, 0), "cuEventCreate")
	return e, err
}

// timed runs op (which queues one thing on the compute stream) between
// two events charged to name. Without a profile, or while recording, it
// only runs op.
func (be *Backend) timed(name string, op func() error) error {
	p := be.prof
	if p == nil || be.recording {
		return op()
	}
	a, err := be.reuseEvent(&p.free)
	if err != nil {
		return err
	}
	b, err := be.reuseEvent(&p.free)
	if err != nil {
		return err
	}
	if err := cuErr(C.fm_event_record(be.ctx, a, be.stream), "cuEventRecord"); err != nil {
		return err
	}
	oerr := op()
	if err := cuErr(C.fm_event_record(be.ctx, b, be.stream), "cuEventRecord"); err != nil {
		return errors.Join(oerr, err)
	}
	p.pend = append(p.pend, profMark{name, a, b})
	if len(p.pend) >= profileFlush {
		return errors.Join(oerr, be.flushProfile())
	}
	return oerr
}

// flushProfile waits for the outstanding events and adds their times.
func (be *Backend) flushProfile() error {
	p := be.prof
	if p == nil || len(p.pend) == 0 {
		return nil
	}
	last := p.pend[len(p.pend)-1].b
	if err := cuErr(C.fm_event_sync(be.ctx, last), "cuEventSynchronize"); err != nil {
		return err
	}
	for _, m := range p.pend {
		var ms C.float
		if err := cuErr(C.fm_event_elapsed(be.ctx, &ms, m.a, m.b), "cuEventElapsedTime"); err != nil {
			return err
		}
		s := p.stats[m.name]
		if s == nil {
			s = &profStat{}
			p.stats[m.name] = s
		}
		s.calls++
		s.ms += float64(ms)
		p.free = append(p.free, m.a, m.b)
	}
	p.pend = p.pend[:0]
	return nil
}

// KernelProfile returns the device time summed per kernel since the last
// call (a table, largest first) and starts a new count; "" when
// FMOE_CUDA_PROFILE is not set.
func (be *Backend) KernelProfile() (string, error) {
	p := be.prof
	if p == nil {
		return "", nil
	}
	if err := be.flushProfile(); err != nil {
		return "", err
	}
	type row struct {
		name string
		s    *profStat
	}
	var rows []row
	total := 0.0
	for n, s := range p.stats {
		rows = append(rows, row{n, s})
		total += s.ms
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].s.ms > rows[j].s.ms })
	var b strings.Builder
	fmt.Fprintf(&b, "%8s %6s %9s %10s  %s\n", "ms", "%", "calls", "µs/call", "kernel")
	for _, r := range rows {
		fmt.Fprintf(&b, "%8.2f %5.1f%% %9d %10.2f  %s\n", r.s.ms, 100*r.s.ms/total, r.s.calls,
			1e3*r.s.ms/float64(r.s.calls), r.name)
	}
	fmt.Fprintf(&b, "%8.2f  total device time of the timed launches\n", total)
	p.stats = map[string]*profStat{}
	return b.String(), nil
}

func (p *launchProfile) destroy(be *Backend) {
	if p == nil {
		return
	}
	for _, m := range p.pend {
		p.free = append(p.free, m.a, m.b)
	}
	for _, e := range p.free {
		C.fm_event_destroy(be.ctx, e)
	}
	p.pend, p.free = nil, nil
}
