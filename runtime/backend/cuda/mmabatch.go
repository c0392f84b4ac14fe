//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/fmoe/fmoe/runtime/backend"
)

var _ backend.MatMulBatcher = (*Backend)(nil)

// mmaGroupedPartBytes bounds the split-K partials of one grouped launch: a
// batch whose partials would take more runs as several launches (its jobs
// are independent, so the bits do not change). A 512-token K=10 prefill
// layer's gate and up projections of its 1024-row experts (4 splits ×
// 10,240 rows × 1,024 × 4 bytes = 160 MiB) take three launches.
const mmaGroupedPartBytes = 64 << 20

// groupJob is one job of a grouped launch, resolved.
type groupJob struct {
	t    *tensor
	x, y C.CUdeviceptr
	T    int
}

// MatMulBatch is backend.MatMulBatcher: the jobs the tensor cores take
// (mmaFits, x at a 16-byte boundary, the path on) run in launches of
// mma_cuda.h's grouped kernel, one set of launches for each weight shape,
// format and group among them, K split by the weight's width alone
// (mmaGroupedSplit), so that a job computes the same bits alone or beside
// any others; the rest run as MatMul, which is also a function of the job
// alone. Every job is checked before any is launched.
func (be *Backend) MatMulBatch(ys []backend.Buffer, ws []backend.Tensor, xs []backend.Buffer, Ts []int) error {
	if be.closed {
		return errClosed
	}
	if len(ys) != len(ws) || len(xs) != len(ws) || len(Ts) != len(ws) {
		return fmt.Errorf("cuda: matmul batch of %d outputs, %d weights, %d inputs, %d row counts", len(ys), len(ws), len(xs), len(Ts))
	}
	grouped := be.mmaGroup[:0]
	defer func() { clear(be.mmaGroup) }() // its room stays, not the tensors
	var apart []int                       // jobs the grouped kernel does not take
	for i, w := range ws {
		t, err := be.tensor(w, "matmul batch")
		if err != nil {
			return err
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
		grouped = append(grouped, groupJob{t: t, x: x.ptr, y: y.ptr, T: Ts[i]})
	}
	be.mmaGroup = grouped
	for _, i := range apart {
		if err := be.MatMul(ys[i], ws[i], xs[i], Ts[i]); err != nil {
			return fmt.Errorf("job %d: %w", i, err)
		}
	}
	// One shape at a time, its jobs in their order.
	slices.SortStableFunc(grouped, func(a, b groupJob) int { return cmpShape(a.t, b.t) })
	for lo := 0; lo < len(grouped); {
		hi := lo + 1
		for hi < len(grouped) && cmpShape(grouped[hi].t, grouped[lo].t) == 0 {
			hi++
		}
		if err := be.mmaShape(grouped[lo:hi]); err != nil {
			return err
		}
		lo = hi
	}
	return nil
}

// cmpShape orders weights by format, rows, columns and group.
func cmpShape(a, b *tensor) int {
	return cmp.Or(cmp.Compare(a.format, b.format), cmp.Compare(a.rows, b.rows), cmp.Compare(a.cols, b.cols), cmp.Compare(a.group, b.group))
}

// mmaShape launches jobs whose weights share one shape, format and group:
// those of few rows on the 16-row tile, the rest on the 64-row one (the
// same bits: mma_cuda.h), each as many a launch as the partials' budget
// and the grid allow.
func (be *Backend) mmaShape(jobs []groupJob) error {
	few := be.mma.skinny
	big := func(j groupJob) int {
		if j.T <= few {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(jobs, func(a, b groupJob) int { return cmp.Compare(big(a), big(b)) })
	n := 0
	for n < len(jobs) && jobs[n].T <= few {
		n++
	}
	if err := be.mmaTiles(jobs[:n], true); err != nil {
		return err
	}
	return be.mmaTiles(jobs[n:], false)
}

// mmaTiles launches jobs of one weight shape on one tile (skinny: 16 rows).
func (be *Backend) mmaTiles(jobs []groupJob, skinny bool) error {
	if len(jobs) == 0 {
		return nil
	}
	t := jobs[0].t
	splits, kLen := mmaGroupedSplit(t.cols, mmaUnit(t.format, t.group), be.mma.gcols)
	for lo := 0; lo < len(jobs); {
		hi, part := lo, 0
		for hi < len(jobs) && hi-lo < maxGridY {
			p := mmaGroupedPart(splits, jobs[hi].T, t.rows)
			if hi > lo && part+p > mmaGroupedPartBytes {
				break
			}
			part += p
			hi++
		}
		if err := be.mmaGrouped(jobs[lo:hi], t, splits, kLen, part, skinny); err != nil {
			return err
		}
		lo = hi
	}
	return nil
}

// mmaGrouped uploads the jobs (weights shaped as t) and launches the
// grouped kernel over them (skinny: its 16-row tile), then, with splits,
// the sums of their partials (part bytes in all).
func (be *Backend) mmaGrouped(jobs []groupJob, t *tensor, splits, kLen, part int, skinny bool) error {
	var base C.CUdeviceptr
	if part > 0 {
		var err error
		if base, err = be.grow(&be.mma.gpart, part); err != nil {
			return err
		}
	}
	tab := be.mmaJobs[:0]
	maxT, off := 0, C.CUdeviceptr(0)
	for _, j := range jobs {
		var p C.CUdeviceptr
		if part > 0 {
			p, off = base+off, off+C.CUdeviceptr(mmaGroupedPart(splits, j.T, t.rows))
		}
		tab = appendMMAJob(tab, uint64(j.t.data), uint64(j.t.scales), uint64(j.t.biases), uint64(j.x), uint64(j.y), uint64(p), j.T)
		maxT = max(maxT, j.T)
	}
	be.mmaJobs = tab
	p, err := be.upload(tab)
	if err != nil {
		return err
	}
	bm, k := mmaBM, be.mma.g[mmaKernel(t.format)]
	if skinny {
		bm, k = mmsBM, be.mma.s[mmaKernel(t.format)]
	}
	ntiles, mtiles := (t.rows+mmaBN-1)/mmaBN, (maxT+bm-1)/bm
	be.args.reset()
	be.args.ptr(p).i32(t.rows).i32(t.cols).i32(t.group).i32(ntiles).i32(mtiles).i32(kLen)
	if err := be.launch(k, ntiles*mtiles*splits, len(jobs), mmaThreads, 0); err != nil {
		return err
	}
	if splits == 1 {
		return nil
	}
	be.args.reset()
	be.args.ptr(p).i32(t.rows).i32(splits)
	return be.launch(be.mma.greduce, (maxT*t.rows+255)/256, len(jobs), 256, 0)
}
