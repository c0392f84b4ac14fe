package metal

import (
	"fmt"

	"github.com/fmoe/fmoe/runtime/backend"
)

// mvWarps is the SIMD groups per matvec threadgroup (2 rows each, MV_NR).
const mvWarps = 8

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
	if T <= 0 || xb.n < T*C || yb.n < T*R {
		return fmt.Errorf("metal: matmul of [%d, %d] weight with T=%d: x has %d values (want %d), y %d (want %d)",
			R, C, T, xb.n, T*C, yb.n, T*R)
	}
	be.matmul(yb.arg(0), t, xb.arg(0), T)
	return nil
}

// matvecPlan says how matvec.h's fast kernel would run a weight: the
// threadgroup memory for one token (x, its chunks padded as the kernel pads
// them, then one Σx per chunk), rounded up to the 16 bytes Metal's
// setThreadgroupMemoryLength wants. ok is false where the kernel does not
// apply and matvec_generic must.
func matvecPlan(f backend.Format, cols, group, maxTG int, dataOff int) (smem1 int, ok bool) {
	epc := 4 * (32 / f.Bits())
	stride := epc
	if (epc/4)%2 == 0 {
		stride += 4
	}
	smem1 = cols / epc * (stride + 1) * 4
	ok = cols%epc == 0 && (!f.Quantized() || group%epc == 0) && dataOff%16 == 0 && round16(smem1) <= maxTG
	return smem1, ok
}

func round16(n int) int { return (n + 15) &^ 15 }

func (be *Backend) matmul(y arg, t *tensor, x arg, T int) {
	R, C := t.rows, t.cols
	smem1, fast := matvecPlan(t.format, C, t.group, be.maxTG, t.data.off)
	if !fast {
		be.run("matvec_generic", R, T, 32, 0, t.data, t.sc, t.bi, x, y, i32(R), i32(C), i32(t.group), i32(int(t.format)))
		return
	}
	name := "matvec_" + t.format.String()
	warps := min(mvWarps, be.dev.maxThreads(name+"_t4")/32, be.dev.maxThreads(name+"_t1")/32)
	// Threadgroups loop over row groups (matvec.h stages x once per
	// threadgroup), so a bounded number of them covers any R.
	blocks := min((R+2*warps-1)/(2*warps), be.mvGroups)
	passes4 := T / 4
	if 4*smem1 > be.maxTG {
		passes4 = 0 // Apple GPUs have 32 KiB: four tokens of a wide x do not fit
	}
	if passes4 > 0 {
		be.run(name+"_t4", blocks, passes4, 32*warps, round16(4*smem1),
			t.data, t.sc, t.bi, x, y, i32(R), i32(C), i32(t.group), i32(0))
	}
	if rest := T - 4*passes4; rest > 0 {
		be.run(name+"_t1", blocks, rest, 32*warps, round16(smem1),
			t.data, t.sc, t.bi, x, y, i32(R), i32(C), i32(t.group), i32(4*passes4))
	}
}

// dequant writes n rows of t as float32 to y: rows ids (an int32 device
// array) when ids.buf != 0, else rows 0..n-1.
func (be *Backend) dequant(y arg, t *tensor, ids arg, n int) {
	useIds := 1
	if ids.buf == 0 {
		ids, useIds = at(be.dummy, 0), 0
	}
	th := be.threads("dequant", 256)
	be.run("dequant", (t.cols+th-1)/th, n, th, 0,
		t.data, t.sc, t.bi, ids, y, i32(t.cols), i32(t.group), i32(int(t.format)), i32(useIds), i32(0))
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
		return fmt.Errorf("metal: embed of %d ids × %d cols into a %d-value buffer", len(ids), t.cols, yb.n)
	}
	for _, id := range ids {
		if id < 0 || id >= t.rows {
			return fmt.Errorf("metal: embed id %d out of range [0, %d)", id, t.rows)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	st, err := be.stage(int32Bytes(ids))
	if err != nil {
		return err
	}
	be.dequant(yb.arg(0), t, st[0], len(ids))
	return nil
}
