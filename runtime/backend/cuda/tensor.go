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

// tensor is a weight in device memory: Data, then Scales and Biases at
// 256-byte aligned offsets, in one allocation (registered) or slot (bound).
type tensor struct {
	be                   *Backend
	rows, cols, group    int
	format               backend.Format
	data, scales, biases C.CUdeviceptr
	mem                  C.CUdeviceptr // registered: its allocation
	slot                 *slot         // bound: its slot
	entry                *centry       // bound from the expert cache: its entry
	bound, released      bool
	direct               bool // bound by DMA from pinned host bytes: Release waits for the copy
	vec                  *buf // float32 decoding for element-wise ops (registered only)
}

// weight is t as the shared ops address it; the allocation is 256-byte
// aligned, so DataOff is 0.
func (t *tensor) weight() gpu.Weight[C.CUdeviceptr] {
	return gpu.Weight[C.CUdeviceptr]{Rows: t.rows, Cols: t.cols, Group: t.group, Format: t.format,
		Data: t.data, Scales: t.scales, Biases: t.biases}
}

func (t *tensor) Rows() int              { return t.rows }
func (t *tensor) Cols() int              { return t.cols }
func (t *tensor) Format() backend.Format { return t.format }

func align256(n int) int { return (n + 255) &^ 255 }

// layout returns the offsets of scales and biases and the total size.
func layout(w backend.Weight) (so, bo, size int) {
	return layoutLens(len(w.Data), len(w.Scales), len(w.Biases))
}

// layoutLens is layout for data, scales and biases of those lengths.
func layoutLens(nd, ns, nb int) (so, bo, size int) {
	so = align256(nd)
	bo = so + align256(ns)
	return so, bo, bo + align256(nb)
}

func (be *Backend) newTensor(w backend.Weight, base C.CUdeviceptr) *tensor {
	so, bo, _ := layout(w)
	return be.tensorAt(w, base, base+C.CUdeviceptr(so), base+C.CUdeviceptr(bo))
}

// tensorAt is a tensor of w's shape and format whose data, scales and
// biases start at those device addresses (scales and biases are kept only
// for the quantised formats).
func (be *Backend) tensorAt(w backend.Weight, data, scales, biases C.CUdeviceptr) *tensor {
	t := &tensor{be: be, rows: w.Rows, cols: w.Cols, group: w.Group, format: w.Format, data: data}
	if w.Format.Quantized() {
		t.scales, t.biases = scales, biases
	}
	return t
}

// uploadWeight queues the copies of w's data, scales and biases to p plus
// the offsets d, s and b.
func (be *Backend) uploadWeight(p C.CUdeviceptr, w backend.Weight, d, s, b int) error {
	for _, part := range []struct {
		off int
		b   []byte
	}{{d, w.Data}, {s, w.Scales}, {b, w.Biases}} {
		if len(part.b) == 0 {
			continue
		}
		r := C.fm_htod(be.ctx, p+C.CUdeviceptr(part.off), unsafe.Pointer(&part.b[0]), C.size_t(len(part.b)), be.stream)
		if err := cuErr(r, "register upload"); err != nil {
			return err
		}
	}
	return nil
}

func checkWeight(w backend.Weight) error {
	if err := w.Check(); err != nil {
		return err
	}
	if w.Rows*w.Cols > maxElems || w.Rows > 1<<30 {
		return fmt.Errorf("cuda: weight [%d, %d] too large for 32-bit element indices", w.Rows, w.Cols)
	}
	return nil
}

// Register uploads a resident weight once; the host bytes are not kept.
func (be *Backend) Register(w backend.Weight) (backend.Tensor, error) {
	if be.closed {
		return nil, errClosed
	}
	if err := checkWeight(w); err != nil {
		return nil, err
	}
	so, bo, size := layout(w)
	p, err := be.devAlloc(size)
	if err != nil {
		return nil, err
	}
	if err := be.uploadWeight(p, w, 0, so, bo); err != nil {
		return nil, errors.Join(err, be.devFree(p))
	}
	t := be.newTensor(w, p)
	t.mem = p
	return t, nil
}

var _ backend.RowConcatenator = (*Backend)(nil)

// RegisterRows is backend.RowConcatenator: one allocation laid out as the
// concatenated weight (its data, then scales and biases at 256-byte
// aligned offsets), uploaded part by part, and each part a tensor whose
// pointers are its first row's in the whole. A part must start at a
// 16-byte boundary of the data (the matvecs load 16-byte chunks).
func (be *Backend) RegisterRows(ws []backend.Weight) (backend.Tensor, []backend.Tensor, error) {
	if be.closed {
		return nil, nil, errClosed
	}
	if len(ws) == 0 {
		return nil, nil, errors.New("cuda: RegisterRows of no weights")
	}
	w0 := ws[0]
	rows, nd, ns, nb := 0, 0, 0, 0 // the whole's rows and byte counts
	for i, w := range ws {
		if err := checkWeight(w); err != nil {
			return nil, nil, fmt.Errorf("part %d: %w", i, err)
		}
		if w.Cols != w0.Cols || w.Format != w0.Format || w.Group != w0.Group {
			return nil, nil, fmt.Errorf("cuda: RegisterRows part %d is a %v [%d, %d] group %d weight, part 0 a %v [%d, %d] group %d",
				i, w.Format, w.Rows, w.Cols, w.Group, w0.Format, w0.Rows, w0.Cols, w0.Group)
		}
		if nd%16 != 0 {
			return nil, nil, fmt.Errorf("cuda: RegisterRows part %d would start at data byte %d, not a 16-byte boundary", i, nd)
		}
		rows, nd, ns, nb = rows+w.Rows, nd+len(w.Data), ns+len(w.Scales), nb+len(w.Biases)
	}
	if rows*w0.Cols > maxElems || rows > 1<<30 {
		return nil, nil, fmt.Errorf("cuda: weight [%d, %d] too large for 32-bit element indices", rows, w0.Cols)
	}
	so, bo, size := layoutLens(nd, ns, nb)
	p, err := be.devAlloc(size)
	if err != nil {
		return nil, nil, err
	}
	at := func(off int) C.CUdeviceptr { return p + C.CUdeviceptr(off) }
	shape := w0
	shape.Rows = rows
	whole := be.tensorAt(shape, p, at(so), at(bo))
	whole.mem = p
	parts := make([]backend.Tensor, len(ws))
	var d, sb int // the part's first byte in Data and in Scales (= in Biases)
	for i, w := range ws {
		if err := be.uploadWeight(p, w, d, so+sb, bo+sb); err != nil {
			return nil, nil, errors.Join(err, be.devFree(p))
		}
		parts[i] = be.tensorAt(w, at(d), at(so+sb), at(bo+sb))
		d += len(w.Data)
		sb += len(w.Scales)
	}
	return whole, parts, nil
}

func (be *Backend) tensor(t backend.Tensor, what string) (*tensor, error) {
	if be.closed {
		return nil, errClosed
	}
	if t == nil {
		return nil, fmt.Errorf("cuda: %s weight is nil", what)
	}
	x, ok := t.(*tensor)
	if !ok || x.be != be {
		return nil, fmt.Errorf("cuda: %s weight %T does not belong to this CUDA backend", what, t)
	}
	if x.released {
		return nil, fmt.Errorf("cuda: %s weight used after Release", what)
	}
	return x, nil
}

// vector returns the float32 values of a weight holding exactly n values
// (norm weights, conv taps, A_log), decoded on the device once for
// registered weights.
func (be *Backend) vector(t backend.Tensor, n int, what string) (C.CUdeviceptr, error) {
	x, err := be.tensor(t, what)
	if err != nil {
		return 0, err
	}
	if err := be.chk.Vector(what, x.rows, x.cols, n); err != nil {
		return 0, err
	}
	if x.vec != nil {
		return x.vec.ptr, nil
	}
	if x.format == backend.F32 {
		return x.data, nil
	}
	b, err := be.Alloc(n)
	if err != nil {
		return 0, err
	}
	v := b.(*buf)
	w := x.weight()
	if err := gpu.Decode(&be.ops, v.ptr, &w); err != nil {
		return 0, err
	}
	if !x.bound {
		x.vec = v
	}
	return v.ptr, nil
}
