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

// DefaultMMVWarpsPerSM is the one-token integer tensor-core matvec's
// setting (shaders/mmv_cuda.h) when nothing else says: on, aiming at 32
// resident warps an SM when it splits a tile's columns over warps. Measured
// on an H200 (docs/benchmarks.md run 13) a resident Qwen3.5-397B layer is
// 7–9% faster with it than with matvec.h's kernels. `FMOE_CUDA_MMV=N` (or
// Options.MMVWarpsPerSM = N) sets N, 0 in the environment or a negative
// Options value turns it off.
const DefaultMMVWarpsPerSM = 32

// mmvOptIn is the setting the tests and benchmarks use to run the path.
const mmvOptIn = 32

// mmvMaxJobs and mmvMaxCols bound what one launch stages: the scratch
// (mmvState.xs, 4.7 MB) is allocated once, when the path is on.
const (
	mmvMaxJobs = 64
	mmvMaxCols = 16384
)

// mmvWords is mmv_cuda.h's mmv_words: the 32-bit words one staged x of C
// columns takes (its B fragments, eight words of sums a 64-column block).
func mmvWords(C int) int { return 128*(C/128) + 8*(C/64) }

// mmvState is the one-token integer tensor-core matvec: its entry points
// (Q2, Q4, Q8: staging x, the matvec, alone and batched), the warps an SM
// it aims at (0: off) and the staged x's scratch.
type mmvState struct {
	stage, stageBatch, stageSwiGLU, k, batch [3]C.CUfunction
	wpsm                                     int
	xs                                       C.CUdeviceptr
	smx                                      bool // the mmvs_* matvecs (mmvSMX)
	pipe                                     bool // the mmvp_* matvecs (mmvPipe), with smx
	maxShared                                int  // the dynamic shared memory a launch may take
	// normStage are the norms with the staging folded in (normmv.go),
	// normThreads their block limits, jobsStage the indexed experts' job
	// tables with it (indexed.go); fold turns their use on (Options.Fold).
	normStage, jobsStage [3]C.CUfunction
	normThreads          [3]int
	fold                 bool
	folds                int // fused launches queued (tests)
}

// mmvSMX reports whether the matvecs copy x's fragments to shared memory
// with cp.async beside the weights' loads (mmv_cuda.h's SMX, mmvs_*): the
// default since run 15 measured them faster on every decode shape (the
// head 1.48×, the experts' batches 1.05–1.12×); FMOE_CUDA_MMV_SMX=0 keeps
// x in registers, to measure against. The same bits either way.
func mmvSMX() bool { return os.Getenv("FMOE_CUDA_MMV_SMX") != "0" }

// mmvPipe reports whether FMOE_CUDA_MMV_PIPE=1 asks for the matvecs that
// copy the weights to shared memory too (mmv_cuda.h's PIPE; Options.MMVPipe).
func mmvPipe() bool { return os.Getenv("FMOE_CUDA_MMV_PIPE") == "1" }

// mmvSMXBytes is the dynamic shared memory an SMX launch of warps warps
// takes (mmv_cuda.h's MMV_SMX_WORDS uint2 a warp), fi the format index.
func mmvSMXBytes(fi, warps int) int { return warps * mmvChunks(fi) * 72 * 8 }

// mmvPipeBytes is a PIPE launch's: MMV_PIPE_WORDS uint2 a warp, the SMX
// words and 4 KB of weights.
func mmvPipeBytes(fi, warps int) int { return mmvSMXBytes(fi, warps) + warps*4096 }

// mmvRedBytes is the matvecs' static shared memory (red: MMV_MAXSEG
// segments of 16 sums), which a launch's dynamic shared memory adds to.
const mmvRedBytes = 16 * 64 * 4

// sharedBytes is the dynamic shared memory a launch of warps warps takes
// with the variant loaded.
func (m *mmvState) sharedBytes(fi, warps int) int {
	switch {
	case m.pipe:
		return mmvPipeBytes(fi, warps)
	case m.smx:
		return mmvSMXBytes(fi, warps)
	}
	return 0
}

// mmvChunks is mmv_body's U: the 128-column chunks of a segment (what a
// lane loads at once) for format index fi (Q2, Q4, Q8).
func mmvChunks(fi int) int { return 16 >> (fi + 1) }

// mmvSMXMax keeps an SMX block within the 48 KB a launch may take without
// opting in, beside the kernel's 4 KB of segment sums.
const mmvSMXMax = 44 << 10

// load finds the entry points (smx: the SMX matvecs, which the module then
// holds unless Options.MMVRegisterX or FMOE_CUDA_MMV_SMX=0), sets the warps per
// SM (opt when non-zero, negative turning the path off, else FMOE_CUDA_MMV,
// else the default) and allocates the scratch. Cards before sm_80 have no
// m16n8k32 integer mma.sync: off.
func (m *mmvState) load(be *Backend, opt int, smx, pipe, fold bool) error {
	n := opt
	if n == 0 {
		n = DefaultMMVWarpsPerSM
		if v, ok := os.LookupEnv("FMOE_CUDA_MMV"); ok {
			var err error
			if n, err = strconv.Atoi(v); err != nil {
				return fmt.Errorf("cuda: FMOE_CUDA_MMV=%q: want warps per SM (0: off)", v)
			}
		}
	}
	if n <= 0 || be.dev.major < 8 {
		m.wpsm = 0
		return nil
	}
	m.smx, m.pipe, m.maxShared, m.fold = smx, smx && pipe, mmvSMXMax, fold
	mv, bmv := "mmv_", "mmv_batch_"
	switch {
	case m.pipe:
		// Past the 48 KB a launch takes without opting in: up to 16 warps
		// of 6.4 KB (Q4), two blocks an SM.
		mv, bmv, m.maxShared = "mmvp_", "mmvp_batch_", be.dev.maxSmem-mmvRedBytes
	case m.smx:
		mv, bmv = "mmvs_", "mmvs_batch_"
	}
	for i, sfx := range []string{"q2", "q4", "q8"} {
		for j, name := range []string{"mmv_stage_", "mmv_stage_batch_", "mmv_stage_swiglu_", mv, bmv} {
			cs := C.CString(name + sfx)
			// Written as address expressions in the call: see mmaState.load.
			var r C.CUresult
			switch j {
			case 0:
				r = C.fm_module_function(be.ctx, &m.stage[i], be.mod, cs)
			case 1:
				r = C.fm_module_function(be.ctx, &m.stageBatch[i], be.mod, cs)
			case 2:
				r = C.fm_module_function(be.ctx, &m.stageSwiGLU[i], be.mod, cs)
			case 3:
				r = C.fm_module_function(be.ctx, &m.k[i], be.mod, cs)
			default:
				r = C.fm_module_function(be.ctx, &m.batch[i], be.mod, cs)
			}
			C.free(unsafe.Pointer(cs))
			if err := cuErr(r, "cuModuleGetFunction "+name+sfx); err != nil {
				return err
			}
		}
		if m.pipe {
			for _, f := range []C.CUfunction{m.k[i], m.batch[i]} {
				if err := cuErr(C.fm_func_set_attr(be.ctx, f, funcAttrMaxDynShared, C.int(m.maxShared)), "cuFuncSetAttribute"); err != nil {
					return err
				}
			}
		}
	}
	if err := m.loadFolds(be); err != nil {
		return err
	}
	xs, err := be.devAlloc(4 * mmvMaxJobs * mmvWords(mmvMaxCols))
	if err != nil {
		return err
	}
	m.xs, m.wpsm = xs, n
	return nil
}

// mmvPlan is how the integer tensor-core matvec launches n jobs of one
// weight shape: the entry points' index (Q2, Q4, Q8) and the warps a tile
// takes; ok is false where the path is off or does not take the shape (then
// matvec.h's kernels run). A tile's warps split its 128-column chunks, as
// many as bring the launch to the warps an SM the setting aims at, at most
// 16 and no more than the row's segments (the chunks a warp loads at once,
// 4 KB a warp; the sums' order is fixed by the shape, whatever the split). The kernel
// finds a 64-column block's group by a shift (G a multiple of 64, G/64 a
// power of two), reads rows 16 bytes at a time (aligned: the weights'
// data, scales and biases are 16-byte aligned, aligned16) and stages x in
// the fixed scratch (C at most mmvMaxCols, n at most mmvMaxJobs).
func (be *Backend) mmvPlan(f backend.Format, R, C, G, n int, aligned bool) (fi, warps int, ok bool) {
	if be.mmv.wpsm <= 0 || !aligned || f < backend.Q2 || f > backend.Q8 || R < 1 || n < 1 || n > mmvMaxJobs {
		return 0, 0, false
	}
	if C < 128 || C%128 != 0 || C > mmvMaxCols || G < 64 || G%64 != 0 || (G/64)&(G/64-1) != 0 || C%G != 0 {
		return 0, 0, false
	}
	fi = int(f - backend.Q2)
	per := mmvChunks(fi)
	segs, tiles := (C/128+per-1)/per, n*((R+15)/16)
	warps = 1
	for warps < 16 && tiles*warps < be.mmv.wpsm*be.dev.sms && 2*warps <= segs &&
		be.mmv.sharedBytes(fi, 2*warps) <= be.mmv.maxShared {
		warps *= 2
	}
	return fi, warps, true
}

// mmvShared is the dynamic shared memory of a matvec launch.
func (be *Backend) mmvShared(fi, warps int) int { return be.mmv.sharedBytes(fi, warps) }

// mmvMatMul runs a one-token MatMul on the integer tensor cores; done is
// false (and nothing is queued) where the path does not take the weight.
func (be *Backend) mmvMatMul(y backend.Buffer, w backend.Tensor, x backend.Buffer) (done bool, err error) {
	t, yb, xb, err := be.matmulOperands(y, w, x, 1)
	if err != nil {
		return true, err
	}
	fi, warps, ok := be.mmvPlan(t.format, t.rows, t.cols, t.group, 1, aligned16(t))
	if !ok {
		return false, nil
	}
	be.args.reset()
	be.args.ptr(xb.ptr).ptr(be.mmv.xs).i32(t.cols)
	if err := be.launch(be.mmv.stage[fi], (t.cols/64+7)/8, 1, 256, 0); err != nil {
		return true, err
	}
	be.args.reset()
	be.args.ptr(t.data).ptr(t.scales).ptr(t.biases).ptr(be.mmv.xs).ptr(yb.ptr)
	be.args.i32(t.rows).i32(t.cols).i32(t.group)
	return true, be.launch(be.mmv.k[fi], (t.rows+15)/16, 1, 32*warps, be.mmvShared(fi, warps))
}

// mmvBatch launches the batched integer tensor-core matvec on n jobs of the
// table at jobs (batch_cuda.h's mv_job); ok is false where the path does
// not take the shape. aligned: every job's weight is (aligned16); the
// indexed experts' are, from cache slots whose parts lie at offsets that
// are multiples of 16 whenever mmvPlan takes the shape (whole rows of data,
// scales and biases, packed or at the pack's 4096-aligned offsets).
func (be *Backend) mmvBatch(jobs C.CUdeviceptr, f backend.Format, R, C, G, n int, aligned bool) (ok bool, err error) {
	return be.mmvBatchOf(jobs, f, R, C, G, n, aligned, 0, 0, 0)
}

// mmvBatchSameX is mmvBatch on jobs that all read x (the batched experts'
// gate and up): x is staged once and every job reads that copy.
func (be *Backend) mmvBatchSameX(jobs C.CUdeviceptr, f backend.Format, R, C, G, n int, x C.CUdeviceptr) (ok bool, err error) {
	return be.mmvBatchOf(jobs, f, R, C, G, n, true, x, 0, 0)
}

// mmvBatchSwiGLU is mmvBatch on jobs whose x are rows of g, with the
// SwiGLU of each row and the same row of u staged in place of x
// (mmv_stage_swiglu): the batched experts' down projection without a
// SwiGLU launch of its own, bit for bit SwiGLU then mmvBatch.
func (be *Backend) mmvBatchSwiGLU(jobs C.CUdeviceptr, f backend.Format, R, C, G, n int, g, u C.CUdeviceptr) (ok bool, err error) {
	return be.mmvBatchOf(jobs, f, R, C, G, n, true, 0, g, u)
}

// mmvBatchOf stages x as the caller says (x: once, for every job; g and u:
// each job's SwiGLU; neither: each job's own x) and launches the batch.
func (be *Backend) mmvBatchOf(jobs C.CUdeviceptr, f backend.Format, R, C, G, n int, aligned bool, x, g, u C.CUdeviceptr) (ok bool, err error) {
	fi, warps, ok := be.mmvPlan(f, R, C, G, n, aligned)
	if !ok || n > maxGridY {
		return false, nil
	}
	be.args.reset()
	stride, stage, jobsY := mmvWords(C), be.mmv.stageBatch[fi], n
	switch {
	case x != 0:
		be.args.ptr(x).ptr(be.mmv.xs).i32(C)
		stride, stage, jobsY = 0, be.mmv.stage[fi], 1
	case g != 0:
		be.args.ptr(jobs).ptr(be.mmv.xs).i32(C).ptr(g).ptr(u)
		stage = be.mmv.stageSwiGLU[fi]
	default:
		be.args.ptr(jobs).ptr(be.mmv.xs).i32(C)
	}
	if err := be.launch(stage, (C/64+7)/8, jobsY, 256, 0); err != nil {
		return true, err
	}
	return true, be.mmvBatchLaunch(jobs, fi, warps, R, C, G, n, stride)
}

// mmvBatchLaunch launches the batched matvec of plan (fi, warps) on n jobs
// whose x are staged (stride apart: 0 for one x).
func (be *Backend) mmvBatchLaunch(jobs C.CUdeviceptr, fi, warps, R, C, G, n, stride int) error {
	be.args.reset()
	be.args.ptr(jobs).ptr(be.mmv.xs).i32(R).i32(C).i32(G).i32(stride)
	return be.launch(be.mmv.batch[fi], (R+15)/16, n, 32*warps, be.mmvShared(fi, warps))
}

// aligned16 reports whether t's data, scales and biases start on 16 bytes.
func aligned16(t *tensor) bool { return (t.data|t.scales|t.biases)%16 == 0 }
