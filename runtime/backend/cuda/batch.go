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
)

var _ backend.MatVecBatcher = (*Backend)(nil)

// batchKernels are batch_cuda.h's entry points, by format (Q2..F32). They
// are the CUDA module's own, outside gpu.Kernel, which Metal shares.
type batchKernels [backend.F32 - backend.Q2 + 1]C.CUfunction

var batchNames = [...]string{"matvec_batch_q2", "matvec_batch_q4", "matvec_batch_q8",
	"matvec_batch_bf16", "matvec_batch_f16", "matvec_batch_f32"}

func (k *batchKernels) load(be *Backend) error {
	for i, name := range batchNames {
		cs := C.CString(name)
		err := cuErr(C.fm_module_function(be.ctx, &k[i], be.mod, cs), "cuModuleGetFunction "+name)
		C.free(unsafe.Pointer(cs))
		if err != nil {
			return err
		}
		if err := cuErr(C.fm_func_set_attr(be.ctx, k[i], funcAttrMaxDynShared, C.int(be.dev.maxSmem)),
			"cuFuncSetAttribute"); err != nil {
			return err
		}
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
		for _, p := range []C.CUdeviceptr{t.data, t.scales, t.biases, x.ptr, y.ptr} {
			jobs = binary.LittleEndian.AppendUint64(jobs, uint64(p))
		}
	}
	w := first.weight()
	warps, blocks, shared, ok := be.ops.MatvecPlan(&w)
	if !ok || len(ws) > maxGridY {
		for i := range ws {
			if err := be.MatMul(ys[i], ws[i], xs[i], 1); err != nil {
				return err
			}
		}
		return nil
	}
	p, err := be.upload(jobs)
	if err != nil {
		return err
	}
	be.args.reset()
	be.args.ptr(p)
	be.args.i32(first.rows)
	be.args.i32(first.cols)
	be.args.i32(first.group)
	return be.launch(be.batch[first.format-backend.Q2], blocks, len(ws), 32*warps, shared)
}
