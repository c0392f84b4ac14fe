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
	so = align256(len(w.Data))
	bo = so + align256(len(w.Scales))
	return so, bo, bo + align256(len(w.Biases))
}

func (be *Backend) newTensor(w backend.Weight, base C.CUdeviceptr) *tensor {
	so, bo, _ := layout(w)
	t := &tensor{be: be, rows: w.Rows, cols: w.Cols, group: w.Group, format: w.Format, data: base}
	if w.Format.Quantized() {
		t.scales, t.biases = base+C.CUdeviceptr(so), base+C.CUdeviceptr(bo)
	}
	return t
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
	for _, part := range []struct {
		off int
		b   []byte
	}{{0, w.Data}, {so, w.Scales}, {bo, w.Biases}} {
		if len(part.b) == 0 {
			continue
		}
		r := C.fm_htod(be.ctx, p+C.CUdeviceptr(part.off), unsafe.Pointer(&part.b[0]), C.size_t(len(part.b)), be.stream)
		if err := cuErr(r, "register upload"); err != nil {
			return nil, errors.Join(err, be.devFree(p))
		}
	}
	t := be.newTensor(w, p)
	t.mem = p
	return t, nil
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
