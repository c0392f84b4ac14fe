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
	"github.com/fmoe/fmoe/runtime/backend/gpu"
)

// A decode step routed on the device (docs/gpu-decode.md A-C): RouteTopK
// writes the token's expert ids and weights to device buffers,
// ExpertsIndexed computes those experts from the cache's device index
// (index.go) and CombineTokenIndexed adds them up with the device weights.
// None reads anything back, allocates or uploads, so all three can be
// recorded in a graph.

var _ backend.DeviceRouter = (*Backend)(nil)

// routeThreads is route_cuda.h's ROUTE_THREADS.
const routeThreads = 32

// RouteTopK is backend.DeviceRouter: one block per token (route_topk).
func (be *Backend) RouteTopK(ids, w, status, logits backend.Buffer, T, E, K int, renorm bool) error {
	var b [4]*buf
	for i, x := range []backend.Buffer{ids, w, status, logits} {
		d, err := be.data(x, [...]string{"route ids", "route weights", "route status", "route logits"}[i])
		if err != nil {
			return err
		}
		b[i] = d
	}
	if err := backend.CheckRouteTopK("cuda", b[0].n, b[1].n, b[2].n, b[3].n, T, E, K); err != nil {
		return err
	}
	rn := 0
	if renorm {
		rn = 1
	}
	a := &be.args
	a.reset()
	a.ptr(b[3].ptr).ptr(b[0].ptr).ptr(b[1].ptr).ptr(b[2].ptr).i32(E).i32(K).i32(rn)
	return be.launch(be.batch.route, T, 1, routeThreads, 0)
}

// ExpertsIndexed is backend.IndexedExperts: experts_jobs writes the job
// tables from ids and the index, then the batched matvecs of MatVecBatch
// run gate and up (2K jobs), SwiGLU, and down (K jobs), so each expert is
// bit for bit what MatVecBatch (and MatMul) computes for it.
func (be *Backend) ExpertsIndexed(eo, g, u, x, ids, status backend.Buffer, layer, K int) error {
	err := be.expertsIndexed(eo, g, u, x, ids, status, layer, K, false)
	return errors.Join(err, be.readQueued(layer))
}

var _ backend.SharedIndexer = (*Backend)(nil)

// ExpertsIndexedShared is backend.SharedIndexer: ExpertsIndexed with the
// layer's shared expert as job K of each launch (2(K+1) gate and up jobs,
// K+1 down jobs), computed as MatVecBatch computes any job.
func (be *Backend) ExpertsIndexedShared(eo, g, u, x, ids, status backend.Buffer, layer, K int) error {
	err := be.expertsIndexed(eo, g, u, x, ids, status, layer, K, true)
	return errors.Join(err, be.readQueued(layer))
}

// IndexShared is backend.SharedIndexer: the shared expert's nine pointers
// go to a small device table of the layer (uploaded once; a second call
// replaces it in place, so a graph holding the table's address stays valid).
func (be *Backend) IndexShared(layer int, gate, up, down backend.Tensor) (bool, error) {
	if be.recording {
		return false, errRecording
	}
	li := be.idx.layers[layer]
	if li == nil || !li.plansOK || !li.fast {
		return false, nil
	}
	var ptrs [expertPtrs]uint64
	for i, w := range []backend.Tensor{gate, up, down} {
		t, err := be.tensor(w, "shared expert")
		if err != nil {
			return false, err
		}
		want := li.gu
		if i == 2 {
			want = li.dn
		}
		if shapeOf(t) != want {
			return false, nil
		}
		ptrs[3*i], ptrs[3*i+1], ptrs[3*i+2] = uint64(t.data), uint64(t.scales), uint64(t.biases)
	}
	if li.shared == 0 {
		p, err := be.devAlloc(8 * expertPtrs)
		if err != nil {
			return false, err
		}
		li.shared = p
	}
	err := cuErr(C.fm_htod(be.ctx, li.shared, unsafe.Pointer(&ptrs[0]), C.size_t(8*expertPtrs), be.stream), "shared expert table")
	return err == nil, err
}

// expertsIndexed is ExpertsIndexed, with the layer's shared expert as job K
// when shared.
func (be *Backend) expertsIndexed(eo, g, u, x, ids, status backend.Buffer, layer, K int, shared bool) error {
	var b [6]*buf
	for i, v := range []backend.Buffer{eo, g, u, x, ids, status} {
		d, err := be.data(v, [...]string{"indexed eo", "indexed gate", "indexed up", "indexed x", "indexed ids", "indexed status"}[i])
		if err != nil {
			return err
		}
		b[i] = d
	}
	li := be.idx.layers[layer]
	n := K
	if shared {
		n++
	}
	switch {
	case li == nil || !li.plansOK:
		return fmt.Errorf("cuda: indexed experts: the expert cache has indexed no expert of layer %d", layer)
	case !li.fast:
		return fmt.Errorf("cuda: indexed experts: layer %d's %v experts [%d, %d] have no batched matvec", layer, li.gu.format, li.gu.rows, li.gu.cols)
	case shared && li.shared == 0:
		return fmt.Errorf("cuda: indexed experts: layer %d has no shared expert registered (IndexShared)", layer)
	case K < 1 || n > maxIndexedK:
		return fmt.Errorf("cuda: indexed experts: K = %d (%d jobs a projection), want at most %d jobs", K, n, maxIndexedK)
	}
	I, H := li.gu.rows, li.gu.cols
	eb, gb, ub, xb, ib, sb := b[0], b[1], b[2], b[3], b[4], b[5]
	if xb.n < H || gb.n < n*I || ub.n < n*I || eb.n < n*H || ib.n < K || sb.n < 1 {
		return fmt.Errorf("cuda: indexed experts: x %d, gate %d, up %d, eo %d, ids %d, status %d values; want %d, %d, %d, %d, %d, 1 (K=%d, %d rows, hidden %d, intermediate %d)",
			xb.n, gb.n, ub.n, eb.n, ib.n, sb.n, H, n*I, n*I, n*H, K, K, n, H, I)
	}
	li.frozen = true // from here a graph may hold li.dev
	jobsGU, jobsDN := be.idx.jobs, be.idx.jobs+C.CUdeviceptr(2*maxIndexedK*jobBytes)
	var sh C.CUdeviceptr
	if shared {
		sh = li.shared
	}
	a := &be.args
	a.reset()
	a.ptr(li.dev).i32(li.capE).ptr(ib.ptr).ptr(sb.ptr).ptr(jobsGU).ptr(jobsDN)
	a.ptr(xb.ptr).ptr(gb.ptr).ptr(ub.ptr).ptr(eb.ptr).i32(K).i32(I).i32(H).ptr(sh)
	// Every gate and up job reads x: staged once where the integer matvec
	// takes the shape, by the job tables' own launch where the launches
	// are folded (Options.Fold: jobs_stage_*).
	gu := li.gu
	fi, warps, ok := be.mmvPlan(gu.format, gu.rows, gu.cols, gu.group, 2*n, true)
	if be.mmv.fold && ok && 2*n <= maxGridY {
		a.ptr(be.mmv.xs).i32(gu.cols)
		if err := be.launch(be.mmv.jobsStage[fi], 1+(gu.cols/64+7)/8, 1, 256, 0); err != nil {
			return err
		}
		be.mmv.folds++
		if err := be.mmvBatchLaunch(jobsGU, fi, warps, gu.rows, gu.cols, gu.group, 2*n, 0); err != nil {
			return err
		}
	} else {
		if err := be.launch(be.batch.jobs, 1, 1, 256, 0); err != nil {
			return err
		}
		if ok, err := be.mmvBatchSameX(jobsGU, gu.format, gu.rows, gu.cols, gu.group, 2*n, xb.ptr); err != nil {
			return err
		} else if !ok {
			if err := be.batchJobs(jobsGU, gu, 2*n); err != nil {
				return err
			}
		}
	}
	// The down projection stages SwiGLU's output itself where the integer
	// matvec takes its shape (no SwiGLU launch); else SwiGLU, then down.
	if ok, err := be.mmvBatchSwiGLU(jobsDN, li.dn.format, li.dn.rows, li.dn.cols, li.dn.group, n, gb.ptr, ub.ptr); ok || err != nil {
		return err
	}
	gv, err := be.View(g, 0, n*I)
	if err != nil {
		return err
	}
	uv, err := be.View(u, 0, n*I)
	if err != nil {
		return err
	}
	if err := be.SwiGLU(gv, gv, uv); err != nil {
		return err
	}
	return be.batchJobs(jobsDN, li.dn, n)
}

// batchJobs launches the batched matvec of shape s on n jobs of the table
// at jobs, with MatVecBatch's plan.
func (be *Backend) batchJobs(jobs C.CUdeviceptr, s projShape, n int) error {
	w := gpu.Weight[C.CUdeviceptr]{Rows: s.rows, Cols: s.cols, Group: s.group, Format: s.format}
	warps, blocks, shared, ok := be.batchPlan(&w, n)
	if !ok {
		return fmt.Errorf("cuda: indexed experts: no batched matvec for %v [%d, %d]", s.format, s.rows, s.cols)
	}
	if ok, err := be.mmvBatch(jobs, s.format, s.rows, s.cols, s.group, n, true); ok || err != nil {
		return err
	}
	f := s.format - backend.Q2
	be.args.reset()
	be.args.ptr(jobs).i32(s.rows).i32(s.cols).i32(s.group)
	return be.launch(be.batch.mv[f], blocks, n, 32*warps, shared)
}

// CombineTokenIndexed is CombineToken with the K weights in device memory
// (moe_combine_idx).
func (be *Backend) CombineTokenIndexed(h, eo, w backend.Buffer, K int, sd, gate backend.Buffer) error {
	if be.closed {
		return errClosed
	}
	hb, err := be.data(h, "combine h")
	if err != nil {
		return err
	}
	eb, err := be.data(eo, "combine experts")
	if err != nil {
		return err
	}
	wb, err := be.data(w, "combine weights")
	if err != nil {
		return err
	}
	m := hb.n
	if K < 1 || K > maxCombine || eb.n < K*m || wb.n < K {
		return fmt.Errorf("cuda: combine of %d expert rows of %d values from a buffer of %d and %d weights (1..%d rows)",
			K, m, eb.n, wb.n, maxCombine)
	}
	mode, sdp, gp, err := be.combineShared(m, sd, gate)
	if err != nil {
		return err
	}
	a := &be.args
	a.reset()
	a.ptr(hb.ptr).ptr(eb.ptr).ptr(sdp).ptr(gp).ptr(wb.ptr)
	a.i32(m).i32(K).i32(mode)
	const threads = 256
	return be.launch(be.batch.combineIdx, (m+threads-1)/threads, 1, threads, 0)
}

// combineShared validates the combine's shared expert: mode 0 (none), 1
// (gated by gate[0]) or 2 (ungated), as moe_combine1 takes them.
func (be *Backend) combineShared(m int, sd, gate backend.Buffer) (mode int, sdp, gp C.CUdeviceptr, err error) {
	if sd == nil {
		return 0, 0, 0, nil
	}
	sb, err := be.data(sd, "combine shared")
	if err != nil {
		return 0, 0, 0, err
	}
	if sb.n != m {
		return 0, 0, 0, fmt.Errorf("cuda: combine: shared expert output of %d values, h of %d", sb.n, m)
	}
	if gate == nil {
		return 2, sb.ptr, 0, nil
	}
	gb, err := be.data(gate, "combine gate")
	if err != nil {
		return 0, 0, 0, err
	}
	if gb.n < 1 {
		return 0, 0, 0, errors.New("cuda: combine: empty shared expert gate")
	}
	return 1, sb.ptr, gb.ptr, nil
}
