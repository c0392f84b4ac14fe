//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"fmt"

	"github.com/fmoe/fmoe/runtime/backend"
)

// The expert cache (backend.ExpertCache) keeps routed experts in device
// memory across steps, keyed by (layer, expert), within a byte budget. An
// entry is the slots of its projections, filled once by the copy that a
// miss makes anyway; a hit binds tensors over the same slots, so it
// computes on the very bytes the miss did. Entries in use (between
// CachedExpert or BindExpert and the Release of their tensors) are never
// evicted; an evicted entry's slots go to the expert that displaced it,
// whose copy waits, on the copy stream, for the last kernel that read them.

var _ backend.ExpertCache = (*Backend)(nil)

// centry is one cached expert.
type centry struct {
	key   ExpertKey
	slots []*slot
	tmpl  []tensor // the projections' shapes, over the slots
	size  int
	pins  int // tensors bound over it and not yet released
	// dropped: DropExpert removed it while in use; the last Release
	// frees its slots.
	dropped bool
	// pending: prefetched (prefetch.go), and no work waits for its copy
	// yet; it is not in the device index either.
	pending bool
}

type expertCache struct {
	budget, used int
	m            map[ExpertKey]*centry
	pol          Policy
	spare        []*slot  // slots of evicted entries not yet reused
	evicted      [][2]int // evicted to make room, since Evicted last took them
}

var _ backend.EvictionReporter = (*Backend)(nil)

// Evicted reports the experts evicted to make room for others (not those
// dropped for a failed checksum), for a host tier to take in.
func (be *Backend) Evicted(dst [][2]int) [][2]int {
	if be.cache == nil {
		return dst
	}
	dst = append(dst, be.cache.evicted...)
	be.cache.evicted = be.cache.evicted[:0]
	return dst
}

// SetExpertCache sets the budget in bytes; 0 turns the cache off. It
// drops what the cache holds (an error while any of it is in use).
// perToken, the experts one token uses (layers × K), converts the
// policy's half-life from tokens to lookups.
func (be *Backend) SetExpertCache(bytes int64, perToken int) error {
	if be.closed {
		return errClosed
	}
	if bytes < 0 {
		return fmt.Errorf("cuda: expert cache budget %d bytes", bytes)
	}
	if err := be.dropCache(); err != nil {
		return err
	}
	pol := be.policy
	if pol == nil {
		p, err := NewPolicy(DefaultPolicy, DefaultHalfLife*float64(max(perToken, 1)))
		if err != nil {
			return err
		}
		pol = p
	}
	be.cache = &expertCache{budget: int(bytes), m: map[ExpertKey]*centry{}, pol: pol}
	return nil
}

// SetCachePolicy replaces the eviction policy (NewPolicy; nil: the
// default) for the caches the next SetExpertCache makes. A policy is
// bookkeeping of one cache: give each cache its own.
func (be *Backend) SetCachePolicy(p Policy) { be.policy = p }

// dropCache frees every entry's slots (after the work that reads them).
func (be *Backend) dropCache() error {
	c := be.cache
	if c == nil {
		return nil
	}
	if be.recording {
		return errRecording
	}
	for _, e := range c.m {
		if e.pins > 0 {
			return fmt.Errorf("cuda: expert cache entry (layer %d, expert %d) still in use", e.key.Layer, e.key.ID)
		}
	}
	var all []*slot
	for _, e := range c.m {
		all = append(all, e.slots...)
	}
	all = append(all, c.spare...)
	if err := be.indexClear(); err != nil {
		return err
	}
	be.cache = nil
	return be.freeSlots(all)
}

// DeviceMemory reports the device's free and total memory.
func (be *Backend) DeviceMemory() (free, total int64, err error) {
	if be.closed {
		return 0, 0, errClosed
	}
	if err := be.Sync(); err != nil { // frees what is pending, so free is current
		return 0, 0, err
	}
	var f, t C.size_t
	if err := cuErr(C.fm_mem_info(be.ctx, &f, &t), "cuMemGetInfo"); err != nil {
		return 0, 0, err
	}
	return int64(f), int64(t), nil
}

// ExpertCacheStats reports the cache's budget, the bytes and experts it
// holds.
func (be *Backend) ExpertCacheStats() (budget, used int64, entries int) {
	if c := be.cache; c != nil {
		return int64(c.budget), int64(c.used), len(c.m)
	}
	return 0, 0, 0
}

// CachedExpert returns tensors over the cached expert (layer, id).
func (be *Backend) CachedExpert(layer, id int) ([]backend.Tensor, bool) {
	c := be.cache
	if be.closed || c == nil {
		return nil, false
	}
	e := c.m[ExpertKey{layer, id}]
	if e == nil {
		return nil, false
	}
	if e.pending && be.settle(e) != nil {
		return nil, false // forgotten (settle): the caller binds it anew
	}
	c.pol.Access(e.key)
	return be.entryTensors(e), true
}

var _ backend.ExpertToucher = (*Backend)(nil)

// TouchExpert counts a use of the held, settled expert (layer, id) for
// the policy, as CachedExpert does, and binds nothing (four allocations
// and three Releases a hit fewer on a device-routed layer's probe).
func (be *Backend) TouchExpert(layer, id int) bool {
	c := be.cache
	if be.closed || c == nil {
		return false
	}
	e := c.m[ExpertKey{layer, id}]
	if e == nil || e.pending {
		return false
	}
	c.pol.Access(e.key)
	return true
}

// entryTensors returns fresh tensors over e's slots (each is released on
// its own) and pins e once per tensor.
func (be *Backend) entryTensors(e *centry) []backend.Tensor {
	out := make([]backend.Tensor, len(e.tmpl))
	for i := range e.tmpl {
		t := e.tmpl[i]
		out[i] = &t
		e.pins++
	}
	return out
}

// BindExpert binds ws (one expert's projections) as Bind does and keeps
// them as (layer, id) when the budget, after evicting entries not in use,
// has room; otherwise they are bound uncached.
func (be *Backend) BindExpert(layer, id int, ws []backend.Weight) ([]backend.Tensor, error) {
	if be.closed {
		return nil, errClosed
	}
	if be.recording {
		return nil, errRecording // a bind copies; an eviction updates the index
	}
	for _, w := range ws {
		if err := checkWeight(w); err != nil {
			return nil, err
		}
	}
	e, direct, err := be.admit(ExpertKey{layer, id}, ws, true)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return be.bindAll(ws)
	}
	out := be.entryTensors(e)
	for i := range out {
		out[i].(*tensor).direct = direct[i]
	}
	if err := be.indexKeep(e); err != nil {
		return nil, err
	}
	return out, nil
}

// admit makes k an entry holding ws when the budget, after evicting
// entries not in use, has room, and queues the copies (with wait, the
// compute stream waits for them). direct reports, per weight, a copy
// straight from pinned memory. A nil entry means the cache did not take
// it: no cache, held already, or no room.
func (be *Backend) admit(k ExpertKey, ws []backend.Weight, wait bool) (*centry, []bool, error) {
	c := be.cache
	if c == nil || c.budget == 0 || c.m[k] != nil {
		return nil, nil, nil
	}
	span, offs := be.expertSpan(ws)
	sizes := make([]int, len(ws))
	size := 0
	for i, w := range ws {
		_, _, sizes[i] = layout(w)
		size += sizes[i]
	}
	if span != nil {
		// One slot, as the expert lies in host memory: one DMA.
		size = offs[len(ws)-1] + sizes[len(ws)-1]
		sizes = []int{size}
	}
	keep := func(v ExpertKey) bool { return c.m[v].pins > 0 }
	if !wait { // a prefetch (prefetch.go)
		keep = func(v ExpertKey) bool { e := c.m[v]; return e.pins > 0 || be.spared(e, k.Layer) }
	}
	for c.used+size > c.budget {
		v, ok := c.pol.Victim(keep)
		if !ok {
			return nil, nil, nil // everything held is in use
		}
		if err := be.evict(c.m[v]); err != nil {
			return nil, nil, err
		}
		c.evicted = append(c.evicted, [2]int{v.Layer, v.ID})
	}
	e := &centry{key: k, size: size}
	for _, n := range sizes {
		s, err := be.cacheSlot(n)
		if err != nil {
			c.spare = append(c.spare, e.slots...)
			return nil, nil, nil // the device is full: bind uncached
		}
		e.slots = append(e.slots, s)
	}
	direct := make([]bool, len(ws))
	for i, w := range ws {
		var t *tensor
		var err error
		switch {
		case span == nil:
			t, err = be.fill(e.slots[i], w, wait)
		case i == 0:
			if err = be.fillSpan(e.slots[0], span, wait); err == nil {
				t = be.slotTensor(e.slots[0], w, offs[0], true)
			}
		default:
			t = be.slotTensor(e.slots[0], w, offs[i], true)
		}
		if err != nil {
			return nil, nil, err
		}
		direct[i], t.direct, t.entry = t.direct, false, e // a hit reads no host memory
		e.tmpl = append(e.tmpl, *t)
	}
	c.m[k] = e
	c.used += size
	c.pol.Insert(k)
	return e, direct, nil
}

func (be *Backend) bindAll(ws []backend.Weight) ([]backend.Tensor, error) {
	out := make([]backend.Tensor, len(ws))
	for i, w := range ws {
		t, err := be.Bind(w)
		if err != nil {
			for _, t := range out[:i] {
				be.Release(t)
			}
			return nil, err
		}
		out[i] = t
	}
	return out, nil
}

// DropExpert removes expert (layer, id) from the cache: its bytes failed
// the checksum that the model verifies beside the compute. An entry not in
// use is evicted at once; one in use leaves the cache now (no later hit)
// and its slots are freed after its last tensor's Release.
func (be *Backend) DropExpert(layer, id int) error {
	c := be.cache
	if be.closed || c == nil {
		return nil
	}
	e := c.m[ExpertKey{layer, id}]
	if e == nil {
		return nil
	}
	if be.recording {
		return errRecording
	}
	if e.pins == 0 {
		return be.evict(e)
	}
	c.unlink(e)
	e.dropped = true
	return be.indexDrop(e.key)
}

// unlink takes e out of the cache's index, policy and budget; its slots
// are the caller's to keep or free.
func (c *expertCache) unlink(e *centry) {
	c.pol.Remove(e.key)
	delete(c.m, e.key)
	c.used -= e.size
}

// freeDropped frees the slots of an entry dropped while in use, once its
// last tensor is released (after the work queued on them).
func (be *Backend) freeDropped(e *centry) {
	be.freeSlots(e.slots) // in use, so waited for: no error
	e.slots = nil
}

// evict removes e, keeping its slots for the next entry. Every kernel
// that read e is queued on the compute stream by now (e is not in use), so
// one event recorded there now marks the slots' last use; with
// FMOE_CUDA_EVICT=layer, its layer's end of reads where one is known
// (evictlayer.go).
func (be *Backend) evict(e *centry) error {
	c := be.cache
	c.unlink(e)
	if err := be.indexDrop(e.key); err != nil {
		return err
	}
	ev, known := be.lastRead(e.key.Layer)
	for _, s := range e.slots {
		if known {
			s.freeOn = ev
			continue
		}
		if err := cuErr(C.fm_event_record(be.ctx, s.free, be.stream), "cuEventRecord"); err != nil {
			return err
		}
		s.freeOn = s.free
	}
	c.spare = append(c.spare, e.slots...)
	return nil
}

// cacheSlot takes a spare slot of size n, or allocates one.
func (be *Backend) cacheSlot(n int) (*slot, error) {
	c := be.cache
	for i, s := range c.spare {
		if s.size == n {
			c.spare = append(c.spare[:i], c.spare[i+1:]...)
			return s, nil
		}
	}
	// Spare slots of other sizes would only fragment the budget.
	err := be.freeSlots(c.spare)
	c.spare = nil
	if err != nil {
		return nil, err
	}
	return be.newSlot(n)
}
