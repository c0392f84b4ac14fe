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

// MatMul computes y[T, Rows] = x[T, Cols]·wᵀ.
func (be *Backend) MatMul(y backend.Buffer, w backend.Tensor, x backend.Buffer, T int) error {
	t, err := be.tensor(w, "matmul")
	if err != nil {
		return err
	}
	yb, err := be.data(y, "matmul y")
	if err != nil {
		return err
	}
	xb, err := be.data(x, "matmul x")
	if err != nil {
		return err
	}
	R, C := t.rows, t.cols
	if T <= 0 || T > maxGridY || xb.n < T*C || yb.n < T*R {
		return fmt.Errorf("cuda: matmul of [%d, %d] weight with T=%d: x has %d values (want %d), y %d (want %d)",
			R, C, T, xb.n, T*C, yb.n, T*R)
	}
	return be.matmul(yb.ptr, t, xb.ptr, T)
}

// maxGridY bounds token counts and row lists that map to grid.y.
const maxGridY = 65535

// elemsPerWord is how many weight elements one 32-bit word holds.
func elemsPerWord(f backend.Format) int { return 32 / f.Bits() }

func (be *Backend) matmul(y C.CUdeviceptr, t *tensor, x C.CUdeviceptr, T int) error {
	R, Cc := t.rows, t.cols
	epc := 4 * elemsPerWord(t.format) // elements per 16-byte chunk
	stride := epc
	if (epc/4)%2 == 0 {
		stride += 4 // see matvec.h: bank-conflict-free float4 reads
	}
	smem1 := Cc / epc * (stride + 1) * 4 // x, then per-chunk Σx
	fast := Cc%epc == 0 && (!t.format.Quantized() || t.group%epc == 0) && smem1 <= be.dev.maxSmem
	if !fast {
		be.args.reset()
		be.args.ptr(t.data).ptr(t.scales).ptr(t.biases).ptr(x).ptr(y).i32(R).i32(Cc).i32(t.group).i32(int(t.format))
		return be.launch(be.k.generic, R, T, 32, 0)
	}
	// 8 warps of 2 rows per block, or 4 where that leaves SMs idle.
	warps := 8
	if (R+15)/16 < 2*be.dev.sms {
		warps = 4
	}
	// Blocks loop over row groups (see matvec.h); a few per SM suffice.
	blocks := min((R+2*warps-1)/(2*warps), 4*be.dev.sms)
	passes4 := T / 4
	if 4*smem1 > be.dev.maxSmem {
		passes4 = 0
	}
	if passes4 > 0 {
		be.args.reset()
		be.args.ptr(t.data).ptr(t.scales).ptr(t.biases).ptr(x).ptr(y).i32(R).i32(Cc).i32(t.group).i32(0)
		if err := be.launch(be.k.matvec[t.format][1], blocks, passes4, 32*warps, 4*smem1); err != nil {
			return err
		}
	}
	if rest := T - 4*passes4; rest > 0 {
		be.args.reset()
		be.args.ptr(t.data).ptr(t.scales).ptr(t.biases).ptr(x).ptr(y).i32(R).i32(Cc).i32(t.group).i32(4 * passes4)
		return be.launch(be.k.matvec[t.format][0], blocks, rest, 32*warps, smem1)
	}
	return nil
}

// Embed writes the dequantised rows ids[i] of w to y.
func (be *Backend) Embed(y backend.Buffer, w backend.Tensor, ids []int) error {
	t, err := be.tensor(w, "embed")
	if err != nil {
		return err
	}
	yb, err := be.data(y, "embed y")
	if err != nil {
		return err
	}
	if yb.n < len(ids)*t.cols {
		return fmt.Errorf("cuda: embed of %d ids × %d cols into a %d-value buffer", len(ids), t.cols, yb.n)
	}
	for _, id := range ids {
		if id < 0 || id >= t.rows {
			return fmt.Errorf("cuda: embed id %d out of range [0, %d)", id, t.rows)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return be.dequantRows(yb.ptr, t, ids, len(ids))
}

// dequantRows writes rows ids (or rows 0..n-1 when ids is nil) of t to y
// as float32, in grid.y chunks.
func (be *Backend) dequantRows(y C.CUdeviceptr, t *tensor, ids []int, n int) error {
	var idp C.CUdeviceptr
	useIds := 0
	if ids != nil {
		b := make([]byte, 4*len(ids))
		for i, id := range ids {
			binary.LittleEndian.PutUint32(b[4*i:], uint32(id))
		}
		var err error
		if idp, err = be.upload(b); err != nil {
			return err
		}
		useIds = 1
	}
	for i0 := 0; i0 < n; i0 += maxGridY {
		be.args.reset()
		be.args.ptr(t.data).ptr(t.scales).ptr(t.biases).ptr(idp + C.CUdeviceptr(4*i0)).ptr(y + C.CUdeviceptr(4*i0*t.cols))
		be.args.i32(t.cols).i32(t.group).i32(int(t.format)).i32(useIds).i32(i0)
		if err := be.launch(be.k.dequant, (t.cols+255)/256, min(maxGridY, n-i0), 256, 0); err != nil {
			return err
		}
	}
	return nil
}
