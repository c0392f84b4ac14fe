//go:build linux && cgo

package cuda

/*
#include <stdlib.h>
#include "fmcuda.h"
*/
import "C"

import (
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend"
)

// DefaultMMAMinRows is the fewest rows (tokens) of a MatMul that run on
// the tensor cores (shaders/mma_cuda.h) when nothing else says. 16 is the
// crossover measured on an H200 (docs/benchmarks.md, "Prefill on tensor
// cores"): at 8 rows the CUDA-core kernel (matvec.h) is faster on every
// shape (13.6 against 18.3 µs on a 1024×4096 expert projection), at 16 the
// tensor cores win on the expert projections (18.8 against 25.4 µs) and
// tie on a mixer-sized weight, from 32 on every shape. Decode (one row)
// keeps matvec.h. `FMOE_CUDA_MMA_MIN=N` (or Options.MMAMinRows) overrides;
// a negative value turns the path off.
const DefaultMMAMinRows = 16

// DefaultMMASkinnyRows is the most rows of a MatMulBatch job that take the
// grouped kernel's 16-row tile (mma_cuda.h's mms_body) rather than its
// 64-row one: a prefill expert's usual few tokens, and up to two 16-row
// tiles, which read the weights twice (from L2 mostly) where the 64-row
// tile wastes half or more of its MMAs and waits on its loads.
// FMOE_CUDA_MMA_SKINNY=N (or Options.MMASkinnyRows) sets another, a
// negative value none.
const DefaultMMASkinnyRows = 32

// mmaState is the tensor-core path: its entry points (Q2, Q4, Q8, BF16;
// the grouped ones of MatMulBatch, 64-row then 16-row tiles, in the same
// order; the split-K reductions), the row thresholds, and the split-K
// partials' scratch.
type mmaState struct {
	k       [4]C.CUfunction
	g       [4]C.CUfunction
	s       [4]C.CUfunction // the grouped kernel's 16-row tile
	reduce  C.CUfunction
	greduce C.CUfunction // the grouped jobs' split-K sums
	minRows int          // 0: off
	part    scratch
	gpart   scratch // MatMulBatch's partials, at most mmaGroupedPartBytes a launch
	// gcols is MatMulBatch's split width (mmaGroupedCols, or
	// FMOE_CUDA_MMA_GCOLS to measure others): one value a process, so
	// that its hits and misses compute alike.
	gcols int
	// skinny is the most rows a grouped job has to take the 16-row tile
	// (0: none).
	skinny int
}

var mmaNames = [...]string{"mma_q2", "mma_q4", "mma_q8", "mma_bf16",
	"mmag_q2", "mmag_q4", "mmag_q8", "mmag_bf16", "mmas_q2", "mmas_q4", "mmas_q8", "mmas_bf16",
	"mma_reduce", "mmag_reduce"}

// load finds the entry points and sets the threshold: opt when non-zero
// (negative turns the path off), else FMOE_CUDA_MMA_MIN, else
// DefaultMMAMinRows. Cards before sm_80 have no bf16 mma.sync: off. gcols,
// when positive, is MatMulBatch's split width (else FMOE_CUDA_MMA_GCOLS,
// else mmaGroupedCols); skinny, when non-zero, the most rows a grouped job
// has to take the 16-row tile (else FMOE_CUDA_MMA_SKINNY, else
// DefaultMMASkinnyRows; negative: none).
func (m *mmaState) load(be *Backend, opt, gcols, skinny int) error {
	for i, name := range mmaNames {
		cs := C.CString(name)
		// The destination is written as an address expression in the call
		// itself: cgo then checks only that element, whereas a pointer held
		// in a variable makes it check the whole Backend, which holds Go
		// pointers, and panic.
		var r C.CUresult
		switch n := len(m.k); {
		case i < n:
			r = C.fm_module_function(be.ctx, &m.k[i], be.mod, cs)
		case i < 2*n:
			r = C.fm_module_function(be.ctx, &m.g[i-n], be.mod, cs)
		case i < 3*n:
			r = C.fm_module_function(be.ctx, &m.s[i-2*n], be.mod, cs)
		case name == "mma_reduce":
			r = C.fm_module_function(be.ctx, &m.reduce, be.mod, cs)
		default:
			r = C.fm_module_function(be.ctx, &m.greduce, be.mod, cs)
		}
		C.free(unsafe.Pointer(cs))
		if err := cuErr(r, "cuModuleGetFunction "+name); err != nil {
			return err
		}
	}
	n := opt
	if n == 0 {
		n = DefaultMMAMinRows
		if v := os.Getenv("FMOE_CUDA_MMA_MIN"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil {
				return fmt.Errorf("cuda: FMOE_CUDA_MMA_MIN=%q: want a row count (negative: off)", v)
			}
		}
	}
	if n < 0 || be.dev.major < 8 {
		n = 0
	}
	m.minRows = n
	m.gcols = mmaGroupedCols
	if gcols > 0 {
		m.gcols = max(gcols, mmaBK)
	} else if v := os.Getenv("FMOE_CUDA_MMA_GCOLS"); v != "" {
		c, err := strconv.Atoi(v)
		if err != nil || c < mmaBK {
			return fmt.Errorf("cuda: FMOE_CUDA_MMA_GCOLS=%q: want the columns of K a grouped block takes (at least %d)", v, mmaBK)
		}
		m.gcols = c
	}
	if skinny == 0 {
		skinny = DefaultMMASkinnyRows
		if v := os.Getenv("FMOE_CUDA_MMA_SKINNY"); v != "" {
			var err error
			if skinny, err = strconv.Atoi(v); err != nil {
				return fmt.Errorf("cuda: FMOE_CUDA_MMA_SKINNY=%q: want the most rows of a job for the 16-row tile (negative: none)", v)
			}
		}
	}
	m.skinny = max(skinny, 0)
	return nil
}

// MMAMinRows is the fewest rows a MatMul needs to run on the tensor
// cores, or 0 where that path is off.
func (be *Backend) MMAMinRows() int { return be.mma.minRows }

// MatMul computes y[T, w.Rows] = x[T, w.Cols]·wᵀ: on the tensor cores for
// one row where that path is on (mmv.go) and from MMAMinRows rows, where
// the weight's format and shape allow it (mmvPlan, mmaFits), otherwise with
// the shared CUDA-core kernels. All meet the conformance suite's float32
// tolerance (mma_cuda.h says why).
func (be *Backend) MatMul(y backend.Buffer, w backend.Tensor, x backend.Buffer, T int) error {
	if T == 1 && be.mmv.wpsm > 0 {
		if done, err := be.mmvMatMul(y, w, x); done || err != nil {
			return err
		}
	}
	if be.mma.minRows > 0 && T >= be.mma.minRows {
		if done, err := be.mmaMatMul(y, w, x, T); done || err != nil {
			return err
		}
	}
	return be.ops.MatMul(y, w, x, T)
}

// matmulOperands resolves a MatMul's weight and buffers and checks their
// sizes, for the paths that launch their own kernels.
func (be *Backend) matmulOperands(y backend.Buffer, w backend.Tensor, x backend.Buffer, T int) (*tensor, *buf, *buf, error) {
	t, err := be.tensor(w, "matmul")
	if err != nil {
		return nil, nil, nil, err
	}
	yb, err := be.data(y, "matmul y")
	if err != nil {
		return nil, nil, nil, err
	}
	xb, err := be.data(x, "matmul x")
	if err != nil {
		return nil, nil, nil, err
	}
	return t, yb, xb, be.chk.MatMul(t.rows, t.cols, T, xb.n, yb.n)
}

// mmaMatMul runs MatMul on the tensor cores; done is false (and nothing
// is queued) where the path does not take the weight or the buffers, for
// the caller to fall back.
func (be *Backend) mmaMatMul(y backend.Buffer, w backend.Tensor, x backend.Buffer, T int) (done bool, err error) {
	t, yb, xb, err := be.matmulOperands(y, w, x, T)
	if err != nil {
		return true, err
	}
	// x is read as float4s; a view may start anywhere.
	if !mmaFits(t.format, t.cols, t.group) || xb.ptr%16 != 0 || T > maxGridY*mmaBM {
		return false, nil
	}
	R, Cc := t.rows, t.cols
	ntiles, mtiles, splits, kLen := mmaPlan(T, R, Cc, mmaUnit(t.format, t.group), be.dev.sms)
	var part C.CUdeviceptr
	if splits > 1 {
		if part, err = be.grow(&be.mma.part, 4*splits*T*R); err != nil {
			return true, err
		}
	}
	be.args.reset()
	be.args.ptr(t.data).ptr(t.scales).ptr(t.biases).ptr(xb.ptr).ptr(yb.ptr).ptr(part)
	be.args.i32(T).i32(R).i32(Cc).i32(t.group).i32(kLen).i32(ntiles)
	if err := be.launch(be.mma.k[mmaKernel(t.format)], ntiles*splits, mtiles, mmaThreads, 0); err != nil {
		return true, err
	}
	if splits == 1 {
		return true, nil
	}
	n := T * R
	be.args.reset()
	be.args.ptr(part).ptr(yb.ptr).i32(n).i32(splits)
	return true, be.launch(be.mma.reduce, (n+255)/256, 1, 256, 0)
}

func mmaKernel(f backend.Format) int {
	if f == backend.BF16 {
		return 3
	}
	return int(f - backend.Q2)
}
