//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"encoding/binary"
	"fmt"

	"github.com/fmoe/fmoe/runtime/backend"
)

var _ backend.MatMulBatcher = (*Backend)(nil)

// mmaJobBytes is mma_cuda.h's mma_job: five pointers and the row count.
const mmaJobBytes = 48

// MatMulBatch is backend.MatMulBatcher: the jobs the tensor cores take
// (mmaFits, x at a 16-byte boundary, the path on) run in one launch of
// mma_cuda.h's grouped kernel, each over the whole of K with no split, so
// that a job computes the same bits alone or beside any others; the rest
// run as MatMul, which is also a function of the job alone.
func (be *Backend) MatMulBatch(ys []backend.Buffer, ws []backend.Tensor, xs []backend.Buffer, Ts []int) error {
	if be.closed {
		return errClosed
	}
	if len(ys) != len(ws) || len(xs) != len(ws) || len(Ts) != len(ws) {
		return fmt.Errorf("cuda: matmul batch of %d outputs, %d weights, %d inputs, %d row counts", len(ys), len(ws), len(xs), len(Ts))
	}
	var first *tensor
	jobs := be.mmaJobs[:0]
	var apart []int // jobs the grouped kernel does not take
	maxT, n := 0, 0
	for i, w := range ws {
		t, err := be.tensor(w, "matmul batch")
		if err != nil {
			return err
		}
		if first == nil {
			first = t
		} else if t.rows != first.rows || t.cols != first.cols || t.format != first.format || t.group != first.group {
			return fmt.Errorf("cuda: matmul batch job %d is a %v [%d, %d] weight, job 0 a %v [%d, %d]",
				i, t.format, t.rows, t.cols, first.format, first.rows, first.cols)
		}
		y, err := be.data(ys[i], "matmul batch y")
		if err != nil {
			return err
		}
		x, err := be.data(xs[i], "matmul batch x")
		if err != nil {
			return err
		}
		if err := be.chk.MatMul(t.rows, t.cols, Ts[i], x.n, y.n); err != nil {
			return fmt.Errorf("job %d: %w", i, err)
		}
		if be.mma.minRows == 0 || !mmaFits(t.format, t.cols, t.group) || x.ptr%16 != 0 {
			apart = append(apart, i)
			continue
		}
		for _, p := range []C.CUdeviceptr{t.data, t.scales, t.biases, x.ptr, y.ptr} {
			jobs = binary.LittleEndian.AppendUint64(jobs, uint64(p))
		}
		jobs = binary.LittleEndian.AppendUint64(jobs, uint64(Ts[i]))
		maxT, n = max(maxT, Ts[i]), n+1
	}
	be.mmaJobs = jobs
	// Checked all before launching any.
	for _, i := range apart {
		if err := be.MatMul(ys[i], ws[i], xs[i], Ts[i]); err != nil {
			return fmt.Errorf("job %d: %w", i, err)
		}
	}
	for lo := 0; lo < n; lo += maxGridY {
		hi := min(n, lo+maxGridY)
		if err := be.mmaGrouped(jobs[lo*mmaJobBytes:hi*mmaJobBytes], first, maxT, hi-lo); err != nil {
			return err
		}
	}
	return nil
}

// mmaGrouped uploads n jobs of weights shaped as t and launches the
// grouped kernel over them; maxT (at least every job's rows) sizes the
// grid's token tiles.
func (be *Backend) mmaGrouped(jobs []byte, t *tensor, maxT, n int) error {
	p, err := be.upload(jobs)
	if err != nil {
		return err
	}
	ntiles, mtiles := (t.rows+mmaBN-1)/mmaBN, (maxT+mmaBM-1)/mmaBM
	be.args.reset()
	be.args.ptr(p).i32(t.rows).i32(t.cols).i32(t.group).i32(ntiles)
	return be.launch(be.mma.g[mmaKernel(t.format)], ntiles*mtiles, n, mmaThreads, 0)
}
