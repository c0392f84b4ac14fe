//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"os"

	"github.com/fmoe/fmoe/runtime/backend"
)

// A norm folded into the one-token integer matvec that reads its output
// (backend.NormMatMuler): mmv_cuda.h's norm_stage_* run the rmsnorm
// kernel's own code and the matvec's staging of x in one launch, so the
// staging's launch no longer stands between the norm and the matvec. The
// same y and the same staged words, so the same bits
// (TestNormStageEmulated on the CPU; TestNormStage, the suite's
// NormMatMul case with the fold on, on a GPU). Opt-in until a GPU has
// measured it (Options.Fold, FMOE_CUDA_FOLD=1); otherwise, and where the
// fused kernel does not take the norm, NormMatMul is the two calls.

var _ backend.NormMatMuler = (*Backend)(nil)

// foldOn reports whether FMOE_CUDA_FOLD=1 asks for the launch folds.
func foldOn() bool { return os.Getenv("FMOE_CUDA_FOLD") == "1" }

// loadFolds finds the norm_stage_* and jobs_stage_* entry points (Q2, Q4,
// Q8).
func (m *mmvState) loadFolds(be *Backend) error {
	for i, sfx := range []string{"q2", "q4", "q8"} {
		for _, k := range []struct {
			name string
			f    *C.CUfunction
		}{{"norm_stage_", &m.normStage[i]}, {"jobs_stage_", &m.jobsStage[i]}} {
			f, err := moduleFunction(be, be.mod, k.name+sfx)
			if err != nil {
				return err
			}
			*k.f = f
		}
		n, err := maxThreads(be, m.normStage[i])
		if err != nil {
			return err
		}
		m.normThreads[i] = n
	}
	return nil
}

// NormMatMul computes the norm n and then MatMul(y, w, n.Y, 1), in one
// launch fewer where the fold is on and takes them.
func (be *Backend) NormMatMul(n backend.Norm, y backend.Buffer, w backend.Tensor) error {
	if be.closed {
		return errClosed
	}
	if be.mmv.fold {
		if done, err := be.normStageMatMul(n, y, w); done || err != nil {
			return err
		}
	}
	if err := n.Apply(be); err != nil {
		return err
	}
	return be.MatMul(y, w, n.Y, 1)
}

// normStageMatMul queues the fused norm and the matvec; done is false, and
// nothing is queued, where they do not fit it: one token, the matvec's
// integer path for w, the norm's heads contiguous from the buffers' start
// and covering w's columns (what MatMul reads of n.Y is what the norm
// writes), a head a whole number of 64-column blocks. Many heads, a gate
// or an add take a block a head (an add writes x); one plain vector whose
// y is not x takes every block the staging needs, each computing the
// whole norm.
func (be *Backend) normStageMatMul(n backend.Norm, y backend.Buffer, w backend.Tensor) (done bool, err error) {
	l := n.L
	if l.T != 1 || l.Off != 0 || (l.H > 1 && l.HeadStride != l.Dim) || l.Dim%64 != 0 || (n.Gate && n.W == nil) {
		return false, nil // (a gate without a weight: GatedRMSNorm's own error)
	}
	t, ob, ny, err := be.matmulOperands(y, w, n.Y, 1) // ob the matvec's output, ny the norm's
	if err != nil {
		return true, err
	}
	fi, warps, ok := be.mmvPlan(t.format, t.rows, t.cols, t.group, 1, aligned16(t))
	if !ok || t.cols != l.H*l.Dim {
		return false, nil
	}
	src, err := be.data(n.X, "norm x")
	if err != nil {
		return true, err
	}
	if err := be.chk.Heads(l, min(ny.n, src.n), "norm"); err != nil {
		return true, err
	}
	var zp, wp C.CUdeviceptr
	flags := 0
	if n.Gate || n.Add {
		zb, err := be.data(n.Z, "norm z")
		if err != nil {
			return true, err
		}
		if err := be.chk.Heads(l, zb.n, "norm z"); err != nil {
			return true, err
		}
		zp, flags = zb.ptr, 4 // rmsnorm's flags: bit 2 the add, bit 1 the gate, bit 0 the weight
		if n.Gate {
			flags = 2
		}
	}
	if n.W != nil {
		if wp, err = (gpuDev{be}).Vector(n.W, l.Dim, "norm"); err != nil {
			return true, err
		}
		flags |= 1
	}
	threads := be.ops.NormThreads(l.Dim)
	if threads > be.mmv.normThreads[fi] {
		return false, nil
	}
	grid, perHead := l.H, 1
	if l.H == 1 && !n.Gate && !n.Add && !overlaps(ny, src) {
		grid, perHead = (t.cols/64+threads/32-1)/(threads/32), 0
	}
	be.args.reset()
	be.args.ptr(ny.ptr).ptr(src.ptr).ptr(zp).ptr(wp).i32(l.Dim).i32(0).f32(n.Eps).i32(flags)
	be.args.ptr(be.mmv.xs).i32(t.cols).i32(perHead)
	if err := be.launch(be.mmv.normStage[fi], grid, 1, threads, 0); err != nil {
		return true, err
	}
	be.mmv.folds++
	be.args.reset()
	be.args.ptr(t.data).ptr(t.scales).ptr(t.biases).ptr(be.mmv.xs).ptr(ob.ptr)
	be.args.i32(t.rows).i32(t.cols).i32(t.group)
	return true, be.launch(be.mmv.k[fi], (t.rows+15)/16, 1, 32*warps, be.mmvShared(fi, warps))
}

// overlaps reports whether two buffers share device memory.
func overlaps(a, b *buf) bool {
	return a.ptr < b.ptr+C.CUdeviceptr(4*b.n) && b.ptr < a.ptr+C.CUdeviceptr(4*a.n)
}
