//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend"
)

// The expert cache's device index (docs/gpu-decode.md B): per layer, a
// device array of E entries of expertPtrs pointers, the data, scales and
// biases of the cached expert's gate, up and down projections (route_cuda.h
// EXPERT_PTRS), all 0 where the cache holds no expert. experts_jobs reads
// it when it runs, so ExpertsIndexed can be recorded in a graph and
// replayed after the cache changed.
//
// Ordering. Every update is queued on the compute stream, where the
// kernels that read the index run, so a kernel sees exactly the updates
// queued before it:
//   - keep: fill has made the compute stream wait for the copy into the
//     entry's slots; the entry's pointers are queued after that wait, so a
//     kernel that finds them finds the bytes in place.
//   - evict (and DropExpert, and dropping the cache): the entry is zeroed
//     at once, so kernels queued afterwards miss rather than read the slots,
//     which a new expert may overwrite. Kernels queued before still hold
//     the old pointers and read the old bytes: evict records the slots'
//     free event after them and the copy of the expert that reuses the
//     slots waits for it; a slot dropped while pinned, or with the cache,
//     is freed only at the next sync, after them too.
// Updates are refused while a graph records (they would be replayed).
//
// Address. A layer's array is allocated when the cache first keeps one of
// its experts, sized for the ids seen (and the E LayerCached is asked
// about), and may grow (a copy to a new array) until the first
// ExpertsIndexed of the layer, which may be recorded into a graph: from
// then on it never moves. An id past a frozen array, or an expert whose
// projections are not those of the layer's first kept expert (gate and up
// alike, down their transpose, one format), is cached but not indexed:
// LayerCached stays false for its layer.

const expertPtrs = 9 // gate, up, down × data, scales, biases

// maxIndexedK is the most experts ExpertsIndexed computes at once (one
// thread each in experts_jobs, the combine's row limit).
const maxIndexedK = maxCombine

// projShape is what the batched matvec needs the same in every job.
type projShape struct {
	rows, cols, group int
	format            backend.Format
}

func shapeOf(t *tensor) projShape { return projShape{t.rows, t.cols, t.group, t.format} }

// layerIndex is one layer's device index and its host mirror.
type layerIndex struct {
	dev     C.CUdeviceptr // [capE][expertPtrs] pointers
	capE    int
	held    []bool // host mirror: which entries are nonzero
	n       int    // how many
	frozen  bool   // an ExpertsIndexed may have recorded dev
	e       int    // the E LayerCached was asked about (0: not yet)
	gu, dn  projShape
	fast    bool          // the batched matvec applies to both shapes
	plansOK bool          // gu, dn set
	shared  C.CUdeviceptr // the shared expert's expertPtrs pointers (IndexShared); 0: none
}

// devIndex is the backend's device index (it outlives SetExpertCache, as
// graphs may hold its addresses) and the job tables experts_jobs writes.
type devIndex struct {
	layers map[int]*layerIndex
	jobs   C.CUdeviceptr // [3·maxIndexedK] mv_job: gate and up, then down
}

const jobBytes = 40 // mv_job: five pointers

// indexLayer returns layer's index, made (not allocated) if new, and the
// job tables, allocated once.
func (be *Backend) indexLayer(layer int) (*layerIndex, error) {
	if be.idx.layers == nil {
		be.idx.layers = map[int]*layerIndex{}
	}
	if be.idx.jobs == 0 {
		p, err := be.devAlloc(3 * maxIndexedK * jobBytes)
		if err != nil {
			return nil, err
		}
		be.idx.jobs = p
	}
	li := be.idx.layers[layer]
	if li == nil {
		li = &layerIndex{}
		be.idx.layers[layer] = li
	}
	return li, nil
}

// growIndex makes li hold at least n entries (rounded up to 64): a new
// zeroed array, the old entries copied in stream order, the old array
// freed after the kernels queued on it. A frozen array does not move.
func (be *Backend) growIndex(li *layerIndex, n int) (bool, error) {
	if n <= li.capE {
		return true, nil
	}
	if li.frozen || be.recording {
		return false, nil
	}
	n = (n + 63) &^ 63
	size := n * expertPtrs * 8
	p, err := be.devAlloc(size)
	if err != nil {
		return false, err
	}
	if err := cuErr(C.fm_memset32(be.ctx, p, 0, C.size_t(size/4), be.stream), "index zero"); err != nil {
		return false, err
	}
	if li.dev != 0 {
		old := li.capE * expertPtrs * 8
		if err := cuErr(C.fm_dtod(be.ctx, p, li.dev, C.size_t(old), be.stream), "index grow"); err != nil {
			return false, err
		}
		be.queueFree(li.dev, old)
	}
	li.dev, li.capE = p, n
	li.held = append(li.held, make([]bool, n-len(li.held))...)
	return true, nil
}

// indexKeep enters the kept entry e into its layer's index (see above for
// the entries it leaves out).
func (be *Backend) indexKeep(e *centry) error {
	if len(e.tmpl) != 3 {
		return nil
	}
	li, err := be.indexLayer(e.key.Layer)
	if err != nil {
		return err
	}
	g, u, d := shapeOf(&e.tmpl[0]), shapeOf(&e.tmpl[1]), shapeOf(&e.tmpl[2])
	if g != u || d.rows != g.cols || d.cols != g.rows || d.format != g.format || d.group != g.group {
		return nil
	}
	if !li.plansOK {
		li.gu, li.dn, li.plansOK = g, d, true
		wg, wd := e.tmpl[0].weight(), e.tmpl[2].weight()
		_, _, _, ok1 := be.ops.MatvecPlan(&wg)
		_, _, _, ok2 := be.ops.MatvecPlan(&wd)
		li.fast = ok1 && ok2
	} else if g != li.gu || d != li.dn {
		return nil
	}
	id := e.key.ID
	if ok, err := be.growIndex(li, max(id+1, li.e)); !ok || err != nil {
		return err
	}
	var v [expertPtrs]uint64
	for j := range e.tmpl {
		t := &e.tmpl[j]
		v[3*j], v[3*j+1], v[3*j+2] = uint64(t.data), uint64(t.scales), uint64(t.biases)
	}
	// From pageable memory (the driver copies v before it returns) or
	// through the pinned ring (h2dSmall).
	dst := li.dev + C.CUdeviceptr(id*expertPtrs*8)
	if err := be.h2dSmall(dst, unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*8), "index upload"); err != nil {
		return err
	}
	if !li.held[id] {
		li.held[id] = true
		li.n++
	}
	return nil
}

// indexDrop zeroes key's entry, if indexed.
func (be *Backend) indexDrop(key ExpertKey) error {
	li := be.idx.layers[key.Layer]
	if li == nil || key.ID >= len(li.held) || !li.held[key.ID] {
		return nil
	}
	dst := li.dev + C.CUdeviceptr(key.ID*expertPtrs*8)
	if err := cuErr(C.fm_memset32(be.ctx, dst, 0, expertPtrs*2, be.stream), "index zero"); err != nil {
		return err
	}
	li.held[key.ID] = false
	li.n--
	return nil
}

// indexClear zeroes every layer's index (the cache is dropped).
func (be *Backend) indexClear() error {
	for _, li := range be.idx.layers {
		if li.n == 0 {
			continue
		}
		if err := cuErr(C.fm_memset32(be.ctx, li.dev, 0, C.size_t(li.capE*expertPtrs*2), be.stream), "index zero"); err != nil {
			return err
		}
		clear(li.held)
		li.n = 0
	}
	return nil
}

var _ backend.IndexedExperts = (*Backend)(nil)

// LayerCached reports whether the cache holds, and indexes, all E experts
// of layer, in shapes the batched matvec computes. The first call for a
// layer fixes its E (another E is false) and sizes its index for it.
func (be *Backend) LayerCached(layer, E int) bool {
	li := be.idx.layers[layer]
	if be.closed || be.cache == nil || li == nil || E <= 0 || !li.fast {
		return false
	}
	if li.e == 0 {
		li.e = E
	}
	if E != li.e {
		return false
	}
	if ok, err := be.growIndex(li, E); !ok || err != nil {
		return false
	}
	if li.n != E {
		return false
	}
	for _, h := range li.held[E:] {
		if h {
			return false // ids past E: not this layer's experts
		}
	}
	return true
}
