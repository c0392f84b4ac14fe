package model

import (
	"sync"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Exclusive tiers. Below a GPU tier the host tier sees only the GPU tier's
// misses, the rare experts; kept inclusive (every miss read into it) it
// holds copies of what the GPU tier has just taken in, and served 27% of
// the misses in run 3 although the two tiers together could hold the whole
// model. When the GPU tier reports its evictions
// (backend.EvictionReporter), the host tier becomes the GPU tier's victim
// cache instead: a miss is read into an ordinary buffer (the GPU tier takes
// it in), a host-tier hit leaves the host tier as the GPU tier takes it,
// and an expert the GPU tier evicts is read back into the host tier by a
// background reader, off the step's path. Once warm, an expert is in one
// tier or the other, and with both budgets covering the model every GPU
// miss is one DMA from pinned memory, with no read.
//
// Only one device (and a miss rank): with further devices, experts reach
// a device other than through rank 0's GPU tier, which the moves assume.

// exclusiveOff keeps the tiers inclusive (benchmarks compare the two).
var exclusiveOff = false

// demoteQueue bounds the evictions waiting to be read back; more are
// dropped (the expert is then read from the files on its next miss).
const demoteQueue = 4096

// exclusiveTiers reports whether the host tier runs as the GPU tier's
// victim cache, and the GPU tier's eviction log. With a miss rank
// (cpumiss.go) the experts it computes stay in the host tier (or are read
// into it): only those the GPU tier takes move up.
func (m *Model) exclusiveTiers() (backend.EvictionReporter, bool) {
	r := m.experts
	if exclusiveOff || r.tier == nil || r.lz4 != nil || !m.oneDevice() || m.ranks[0].cache == nil {
		return nil, false
	}
	ev, ok := m.ranks[0].cache.(backend.EvictionReporter)
	return ev, ok
}

// tierMode sets the host tier's mode for a step.
func (m *Model) tierMode() {
	if r := m.experts; r.tier != nil {
		_, r.tier.exclusive = m.exclusiveTiers()
	}
}

// demoteEvicted queues the GPU tier's evictions since the last call for
// reading into the host tier. Called after each layer, it gives a read-back
// a token's worth of layers before its layer comes round again.
func (m *Model) demoteEvicted() {
	ev, ok := m.exclusiveTiers()
	if !ok {
		return
	}
	m.evicted = ev.Evicted(m.evicted[:0])
	for _, k := range m.evicted {
		m.experts.demote(k[0], k[1])
	}
	if demoteSync {
		m.experts.settleDemotions()
	}
}

// demoteSync waits for each layer's read-backs (tests: a deterministic
// split between the tiers).
var demoteSync = false

// demoters is how many read-backs run at once: at K=10 a 397B token
// evicts ~75 experts (1.24 misses a layer), ~0.3 ms each to read from the
// page cache in readParts pieces, so one reader would fall behind a token
// of ~25 ms.
const demoters = 4

// demoter reads evicted experts into the host tier.
type demoter struct {
	once sync.Once
	q    chan [2]int
	busy sync.WaitGroup // queued and not yet read
	done sync.WaitGroup // the goroutine
}

// demote queues expert (l, id) for reading into the host tier.
func (r *expertReader) demote(l, id int) {
	d := &r.dem
	d.once.Do(func() {
		d.q = make(chan [2]int, demoteQueue)
		for range demoters {
			d.done.Add(1)
			go func() {
				defer d.done.Done()
				for k := range d.q {
					r.readBack(k[0], k[1])
					d.busy.Done()
				}
			}()
		}
	})
	d.busy.Add(1)
	select {
	case d.q <- [2]int{l, id}:
	default:
		d.busy.Done()
	}
}

// readBack reads expert (l, id) into a host-tier buffer, checked as a
// first read is (integrity.go); a failed read or check leaves no entry.
func (r *expertReader) readBack(l, id int) {
	te, buf, hit := r.tier.get(l, id)
	if te == nil || hit {
		if te != nil {
			r.tier.put(te, true)
		}
		return
	}
	e := &expert{id: id, buf: buf}
	check := r.needsCheck(l, id)
	sum, err := readSplit(r.files[l], buf, int64(id)*r.set.Stride, check)
	e.sum, e.err = sum, err
	if err == nil && check {
		r.verify(e, l)
	}
	r.tier.put(te, e.err == nil)
}

// settleDemotions waits for the queued read-backs (tests).
func (r *expertReader) settleDemotions() { r.dem.busy.Wait() }

// stopDemoter ends the reader of evictions before the tier's memory goes.
func (r *expertReader) stopDemoter() {
	d := &r.dem
	d.once.Do(func() {}) // none started: none will be
	if d.q != nil {
		close(d.q)
		d.done.Wait()
	}
}
