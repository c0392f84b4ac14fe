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

// DefaultMMVBlocksPerSM is the one-token integer tensor-core matvec's
// persistent blocks per SM (shaders/mmv_cuda.h: 256 threads each) when
// nothing else says: 0, off until measured on the decode (docs/benchmarks.md).
// `FMOE_CUDA_MMV=N` (or Options.MMVBlocksPerSM = N) runs it at N blocks per
// SM; a negative Options value keeps it off whatever the environment says.
const DefaultMMVBlocksPerSM = 0

// mmvOptIn is the setting the tests and benchmarks use to run the path.
const mmvOptIn = 2

// mmvWarps is mmv_cuda.h's MMV_WARPS.
const mmvWarps = 8

// mmvState is the one-token tensor-core matvec: its entry points (Q2, Q4,
// Q8, alone and batched) and blocks per SM (0: off).
type mmvState struct {
	k, batch [3]C.CUfunction
	bpsm     int
}

var mmvNames = [...]string{"mmv_q2", "mmv_q4", "mmv_q8", "mmv_batch_q2", "mmv_batch_q4", "mmv_batch_q8"}

// load finds the entry points and sets the blocks per SM: opt when
// non-zero (negative turns the path off), else FMOE_CUDA_MMV, else the
// default. Cards before sm_80 have no m16n8k32 integer mma.sync: off.
func (m *mmvState) load(be *Backend, opt int) error {
	n := opt
	if n == 0 {
		n = DefaultMMVBlocksPerSM
		if v := os.Getenv("FMOE_CUDA_MMV"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil {
				return fmt.Errorf("cuda: FMOE_CUDA_MMV=%q: want blocks per SM (0: off)", v)
			}
		}
	}
	if n <= 0 || be.dev.major < 8 {
		m.bpsm = 0
		return nil
	}
	m.bpsm = n
	for i, name := range mmvNames {
		cs := C.CString(name)
		// Written as address expressions in the call: see mmaState.load.
		var r C.CUresult
		if i < len(m.k) {
			r = C.fm_module_function(be.ctx, &m.k[i], be.mod, cs)
		} else {
			r = C.fm_module_function(be.ctx, &m.batch[i-len(m.k)], be.mod, cs)
		}
		C.free(unsafe.Pointer(cs))
		if err := cuErr(r, "cuModuleGetFunction "+name); err != nil {
			return err
		}
	}
	for i := range m.k {
		for _, f := range []C.CUfunction{m.k[i], m.batch[i]} {
			if err := cuErr(C.fm_func_set_attr(be.ctx, f, funcAttrMaxDynShared, C.int(be.dev.maxSmem)),
				"cuFuncSetAttribute"); err != nil {
				return err
			}
		}
	}
	return nil
}

// mmvShared is the dynamic shared memory of mmv_body for C columns in
// groups of G, in words: x's digits as B fragments (128 a 128-column
// chunk), the tile's scales and biases (16 rows of C/G + 8 half-words each:
// the pad keeps a warp's eight rows in different banks), the warps' partial
// sums, a zero uint2 (4), and per 64-column block its exponent, factor,
// four digit sums and Σx (7).
func mmvShared(C, G int) int { return 4 * (C/128*128 + 16*(C/G+8) + 16*mmvWarps + 4 + 7*(C/64)) }

// mmvPlan is how the tensor-core matvec launches n jobs of one weight
// shape: the entry point's index (Q2, Q4, Q8), blocks per job and shared
// memory; ok is false where the path is off or does not take the shape
// (then matvec.h's kernels run). The kernel reads a row in 128-column
// chunks of two 64-column blocks, each block in one scale group (found by a
// shift: G/64 a power of two), and stages a tile's scales and biases 16 bytes at a time:
// C a multiple of 128, G of 64, C/G a multiple of 8 and at most 128
// (mmv_cuda.h's MMV_SCV), and ptrs (the weights' data, scales and biases)
// 16-byte aligned.
func (be *Backend) mmvPlan(f backend.Format, R, C, G, n int, ptrs ...C.CUdeviceptr) (fi, blocks, shared int, ok bool) {
	if be.mmv.bpsm <= 0 || f < backend.Q2 || f > backend.Q8 || R < 1 || n < 1 {
		return 0, 0, 0, false
	}
	if C < 128 || C%128 != 0 || G < 64 || G%64 != 0 || (G/64)&(G/64-1) != 0 || C%G != 0 || (C/G)%8 != 0 || C/G > 128 {
		return 0, 0, 0, false
	}
	for _, p := range ptrs {
		if p%16 != 0 {
			return 0, 0, 0, false
		}
	}
	if shared = mmvShared(C, G); shared > be.dev.maxSmem {
		return 0, 0, 0, false
	}
	tiles := (R + 15) / 16
	per := max(1, (be.mmv.bpsm*be.dev.sms+n-1)/n)
	return int(f - backend.Q2), min(tiles, per), shared, true
}

// mmvMatMul runs a one-token MatMul on the tensor cores; done is false
// (and nothing is queued) where the path does not take the weight.
func (be *Backend) mmvMatMul(y backend.Buffer, w backend.Tensor, x backend.Buffer) (done bool, err error) {
	t, yb, xb, err := be.matmulOperands(y, w, x, 1)
	if err != nil {
		return true, err
	}
	fi, blocks, shared, ok := be.mmvPlan(t.format, t.rows, t.cols, t.group, 1, t.data, t.scales, t.biases)
	if !ok {
		return false, nil
	}
	be.args.reset()
	be.args.ptr(t.data).ptr(t.scales).ptr(t.biases).ptr(xb.ptr).ptr(yb.ptr)
	be.args.i32(t.rows).i32(t.cols).i32(t.group)
	return true, be.launch(be.mmv.k[fi], blocks, 1, 32*mmvWarps, shared)
}

// mmvBatch launches the batched tensor-core matvec on n jobs of the table
// at jobs (batch_cuda.h's mv_job); ok is false where the path does not
// take the shape. ptrs are the jobs' weight pointers where the caller knows
// them; the indexed experts' come from cache slots, where a tensor's parts
// lie at offsets that are multiples of 16 whenever mmvPlan takes the shape
// (whole rows of data, scales and biases, packed or at the pack's
// 4096-aligned offsets).
func (be *Backend) mmvBatch(jobs C.CUdeviceptr, f backend.Format, R, C, G, n int, ptrs ...C.CUdeviceptr) (ok bool, err error) {
	fi, blocks, shared, ok := be.mmvPlan(f, R, C, G, n, ptrs...)
	if !ok || n > maxGridY {
		return false, nil
	}
	be.args.reset()
	be.args.ptr(jobs).i32(R).i32(C).i32(G)
	return true, be.launch(be.mmv.batch[fi], blocks, n, 32*mmvWarps, shared)
}
