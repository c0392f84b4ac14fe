//go:build linux && cgo

package cuda

/*
#include <stdlib.h>
#include "fmcuda.h"
*/
import "C"

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/gpu"
)

var (
	_ backend.MatVecBatcher = (*Backend)(nil)
	_ backend.TokenCombiner = (*Backend)(nil)
)

// batchKernels are batch_cuda.h's entry points (the batched matvecs by
// format, Q2..F32, and moe_combine1) and route_cuda.h's. They are the CUDA
// module's own, outside gpu.Kernel, which Metal shares.
type batchKernels struct {
	mv        [backend.F32 - backend.Q2 + 1]C.CUfunction
	mvThreads [backend.F32 - backend.Q2 + 1]int // each one's largest block
	combine   C.CUfunction
	// route_cuda.h: RouteTopK, ExpertsIndexed's job tables,
	// CombineTokenIndexed.
	route, jobs, combineIdx C.CUfunction
	readMapped, writeMapped C.CUfunction // the host's small reads and uploads (readmapped.go)
}

var batchNames = [...]string{"matvec_batch_q2", "matvec_batch_q4", "matvec_batch_q8",
	"matvec_batch_bf16", "matvec_batch_f16", "matvec_batch_f32"}

// moduleFunction looks name up in mod. Into a local, returned: cgo
// refuses a pointer into the Backend (it holds Go pointers) unless it is
// written as &field at the call.
func moduleFunction(be *Backend, mod C.CUmodule, name string) (C.CUfunction, error) {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	var f C.CUfunction
	err := cuErr(C.fm_module_function(be.ctx, &f, mod, cs), "cuModuleGetFunction "+name)
	return f, err
}

func (k *batchKernels) load(be *Backend) error {
	// Into a local: cgo refuses a pointer into the Backend (it holds Go
	// pointers) unless it is written as &field at the call.
	mod := be.mod
	get := func(dst *C.CUfunction, name string) error {
		f, err := moduleFunction(be, mod, name)
		*dst = f
		return err
	}
	for _, f := range []struct {
		dst  *C.CUfunction
		name string
	}{{&k.combine, "moe_combine1"}, {&k.route, "route_topk"}, {&k.jobs, "experts_jobs"}, {&k.combineIdx, "moe_combine_idx"}, {&k.readMapped, "read_mapped"}, {&k.writeMapped, "write_mapped"}} {
		if err := get(f.dst, f.name); err != nil {
			return err
		}
	}
	if be.bmod != nil {
		mod = be.bmod // the batched matvecs' own setting (Options.BatchMatvec)
	}
	for i, name := range batchNames {
		if err := get(&k.mv[i], name); err != nil {
			return err
		}
		if err := cuErr(C.fm_func_set_attr(be.ctx, k.mv[i], funcAttrMaxDynShared, C.int(be.dev.maxSmem)),
			"cuFuncSetAttribute"); err != nil {
			return err
		}
		n, err := maxThreads(be, k.mv[i])
		if err != nil {
			return err
		}
		k.mvThreads[i] = n
	}
	return nil
}

// MatVecBatch computes ys[i] = ws[i]·xs[i] for one token each, in one
// launch: the K routed experts' gate and up projections of a decode step,
// or their down projections, cost one host launch instead of K or 2K.
// Every weight must have the shape, format and group of the first. Where
// the fast matvec does not apply it falls back to one MatMul per job.
func (be *Backend) MatVecBatch(ys []backend.Buffer, ws []backend.Tensor, xs []backend.Buffer) error {
	if be.closed {
		return errClosed
	}
	if len(ys) != len(ws) || len(xs) != len(ws) {
		return fmt.Errorf("cuda: matvec batch of %d outputs, %d weights, %d inputs", len(ys), len(ws), len(xs))
	}
	if len(ws) == 0 {
		return nil
	}
	jobs := make([]byte, 0, 40*len(ws))
	aligned := true
	var first *tensor
	for i, w := range ws {
		t, err := be.tensor(w, "matvec batch")
		if err != nil {
			return err
		}
		if first == nil {
			first = t
		} else if t.rows != first.rows || t.cols != first.cols || t.format != first.format || t.group != first.group {
			return fmt.Errorf("cuda: matvec batch job %d is a %v [%d, %d] weight, job 0 a %v [%d, %d]",
				i, t.format, t.rows, t.cols, first.format, first.rows, first.cols)
		}
		y, err := be.data(ys[i], "matvec batch y")
		if err != nil {
			return err
		}
		x, err := be.data(xs[i], "matvec batch x")
		if err != nil {
			return err
		}
		if err := be.chk.MatMul(t.rows, t.cols, 1, x.n, y.n); err != nil {
			return fmt.Errorf("job %d: %w", i, err)
		}
		aligned = aligned && aligned16(t)
		for _, p := range []C.CUdeviceptr{t.data, t.scales, t.biases, x.ptr, y.ptr} {
			jobs = binary.LittleEndian.AppendUint64(jobs, uint64(p))
		}
	}
	w := first.weight()
	warps, blocks, shared, ok := be.batchPlan(&w, len(ws))
	if !ok || len(ws) > maxGridY {
		return be.matVecEach(ys, ws, xs)
	}
	p, err := be.upload(jobs)
	if err != nil {
		return err
	}
	if ok, err := be.mmvBatch(p, first.format, first.rows, first.cols, first.group, len(ws), aligned); ok || err != nil {
		return err
	}
	if be.mma.minRows == 1 {
		// MatMul takes one row to the tensor cores where the integer
		// matvec does not apply (Options.MMAMinRows 1, the conformance
		// run's setting): the same path a job, for MatMul's bits.
		return be.matVecEach(ys, ws, xs)
	}
	be.args.reset()
	be.args.ptr(p)
	be.args.i32(first.rows)
	be.args.i32(first.cols)
	be.args.i32(first.group)
	return be.launch(be.batch.mv[first.format-backend.Q2], blocks, len(ws), 32*warps, shared)
}

// matVecEach is MatVecBatch as one MatMul a job.
func (be *Backend) matVecEach(ys []backend.Buffer, ws []backend.Tensor, xs []backend.Buffer) error {
	for i := range ws {
		if err := be.MatMul(ys[i], ws[i], xs[i], 1); err != nil {
			return err
		}
	}
	return nil
}

// batchPlan is how a batched matvec of n jobs of t's shape launches:
// warps per block, blocks per job (grid x; the jobs are grid y) and
// dynamic shared memory. A block stages the job's x in shared memory once
// and then loops over row groups (matvec.h), so the blocks of all the jobs
// together are the persistent blocks of one matvec (MatvecBlocks): each
// block then computes several row groups per staging, where one launch's
// plan per job (FMOE_CUDA_BATCH_PLAN=perjob, the plan before) gave an
// expert projection's 1,024 rows 128 blocks of one row group each, as many
// bytes of x staged as of weights read. Which block computes a row changes
// no bit of it.
func (be *Backend) batchPlan(t *gpu.Weight[C.CUdeviceptr], n int) (warps, blocks, shared int, ok bool) {
	warps, blocks, shared, ok = be.ops.MatvecPlan(t)
	if !ok {
		return
	}
	// Where the batch kernel's registers allow fewer threads than the
	// single-job kernel's, fewer warps: the blocks loop over the rest.
	most := be.batch.mvThreads[t.Format-backend.Q2] / 32
	if be.batchPerJob {
		return max(1, min(warps, most)), blocks, shared, true
	}
	warps = max(1, min(be.bmv.Warps, most))
	groups := (t.Rows + be.bmv.Rows*warps - 1) / (be.bmv.Rows * warps)
	persistent := be.bmv.BlocksPerSM * be.dev.sms
	return warps, min(groups, max(1, (persistent+n-1)/n)), shared, true
}

// maxCombine is the most expert rows CombineToken takes (its weights are
// a kernel parameter: combine_w in batch_cuda.h).
const maxCombine = 32

// CombineToken adds one token's MoE output to h in one launch (backend.TokenCombiner).
func (be *Backend) CombineToken(h, eo backend.Buffer, w []float32, sd, gate backend.Buffer) error {
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
	m, n := hb.n, len(w)
	if n > maxCombine || eb.n < n*m {
		return fmt.Errorf("cuda: combine of %d expert rows of %d values from a buffer of %d (at most %d rows)", n, m, eb.n, maxCombine)
	}
	mode, sdp, gp, err := be.combineShared(m, sd, gate)
	if err != nil {
		return err
	}
	var wv [maxCombine]float32
	copy(wv[:], w)
	a := &be.args
	a.reset()
	a.ptr(hb.ptr).ptr(eb.ptr).ptr(sdp).ptr(gp)
	a.put(unsafe.Pointer(&wv[0]), 4*maxCombine)
	a.i32(m).i32(n).i32(mode)
	const threads = 256
	return be.launch(be.batch.combine, (m+threads-1)/threads, 1, threads, 0)
}
