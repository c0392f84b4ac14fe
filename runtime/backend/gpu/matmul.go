package gpu

import "github.com/fmoe/fmoe/runtime/backend"

// MatMul computes y[T, Rows] = x[T, Cols]·wᵀ.
func (o *Ops[A]) MatMul(y backend.Buffer, w backend.Tensor, x backend.Buffer, T int) error {
	t, err := o.dev.Weight(w, "matmul")
	if err != nil {
		return err
	}
	var p [2]A
	var n [2]int
	if err := o.buffers(p[:], n[:], []string{"matmul y", "matmul x"}, y, x); err != nil {
		return err
	}
	if err := o.chk.MatMul(t.Rows, t.Cols, T, n[1], n[0]); err != nil {
		return err
	}
	return o.matmul(p[0], &t, p[1], T)
}

// matvecShared is the shared memory matvec.h's fast kernel needs for one
// token (x, its 16-byte chunks padded as the kernel pads them, then one Σx
// per chunk); ok is false where that kernel does not apply to t on this
// device and matvec_generic must.
func (o *Ops[A]) matvecShared(t *Weight[A]) (smem1 int, ok bool) {
	epc := 4 * (32 / t.Format.Bits()) // elements per 16-byte chunk
	stride := epc
	if (epc/4)%2 == 0 {
		stride += 4 // see matvec.h: bank-conflict-free float4 reads
	}
	smem1 = t.Cols / epc * (stride + 1) * 4
	ok = t.Cols%epc == 0 && (!t.Format.Quantized() || t.Group%epc == 0) &&
		(o.lim.DataAlign <= 1 || t.DataOff%o.lim.DataAlign == 0) && o.lim.shared(smem1) <= o.lim.MaxShared
	return smem1, ok
}

// MatvecPlan is how matmul launches matvec.h's fast kernel for one token
// of t: warps per block, blocks, and dynamic shared memory; ok is false
// where only matvec_generic applies. Batched launches (the CUDA backend's
// MatVecBatch) use it so that each job runs as its own launch would.
func (o *Ops[A]) MatvecPlan(t *Weight[A]) (warps, blocks, shared int, ok bool) {
	smem1, ok := o.matvecShared(t)
	if !ok {
		return 0, 0, 0, false
	}
	k1, k4 := matvec(t.Format, false), matvec(t.Format, true)
	warps = o.mvWarps(t.Rows, k1, k4)
	return warps, o.mvBlocks(t.Rows, warps), o.lim.shared(smem1), true
}

// mvWarps: MatvecWarps (8) warps of MV_NR rows per block, halved (to no
// fewer than 4) while that leaves SMs without two blocks.
func (o *Ops[A]) mvWarps(R int, k1, k4 Kernel) int {
	warps := mvWarps
	if o.lim.MatvecWarps > 0 {
		warps = o.lim.MatvecWarps
	}
	nr := o.lim.mvRows()
	for warps > 4 && (R+nr*warps-1)/(nr*warps) < 2*o.lim.SMs {
		warps /= 2
	}
	return o.lim.warps(k1, o.lim.warps(k4, warps))
}

// mvBlocks: one block per warps·MV_NR rows, up to MatvecBlocks. Blocks loop
// over row groups (matvec.h stages x once per block), so a bounded number
// of them covers any R.
func (o *Ops[A]) mvBlocks(R, warps int) int {
	nr := o.lim.mvRows()
	return min((R+nr*warps-1)/(nr*warps), o.lim.MatvecBlocks)
}

func (o *Ops[A]) matmul(y A, t *Weight[A], x A, T int) error {
	R, C := t.Rows, t.Cols
	smem1, fast := o.matvecShared(t)
	if !fast {
		l := o.launch(kMatvecGeneric, R, T, 32, 0)
		l.ptr(t.Data).ptr(t.Scales).ptr(t.Biases).ptr(x).ptr(y).i32(R).i32(C).i32(t.Group).i32(int(t.Format))
		return o.dev.Launch(l)
	}
	k1, k4 := matvec(t.Format, false), matvec(t.Format, true)
	warps := o.mvWarps(R, k1, k4)
	blocks := o.mvBlocks(R, warps)
	passes4 := T / 4
	if 4*smem1 > o.lim.MaxShared {
		passes4 = 0 // four tokens of a wide x may not fit (Apple GPUs have 32 KiB)
	}
	if passes4 > 0 {
		l := o.launch(k4, blocks, passes4, 32*warps, o.lim.shared(4*smem1))
		l.ptr(t.Data).ptr(t.Scales).ptr(t.Biases).ptr(x).ptr(y).i32(R).i32(C).i32(t.Group).i32(0)
		if err := o.dev.Launch(l); err != nil {
			return err
		}
	}
	if rest := T - 4*passes4; rest > 0 {
		l := o.launch(k1, blocks, rest, 32*warps, o.lim.shared(smem1))
		l.ptr(t.Data).ptr(t.Scales).ptr(t.Biases).ptr(x).ptr(y).i32(R).i32(C).i32(t.Group).i32(4 * passes4)
		return o.dev.Launch(l)
	}
	return nil
}

// Embed writes the dequantised rows ids[i] of w to y.
func (o *Ops[A]) Embed(y backend.Buffer, w backend.Tensor, ids []int) error {
	t, err := o.dev.Weight(w, "embed")
	if err != nil {
		return err
	}
	yp, ny, err := o.dev.Buffer(y, "embed y")
	if err != nil {
		return err
	}
	if err := o.chk.Embed(ids, t.Rows, t.Cols, ny); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	return o.dequant(yp, &t, ids, len(ids))
}

// Decode writes w, all of its rows, as float32 to y: how a Device's Vector
// decodes a weight that is not F32.
func Decode[A any](o *Ops[A], y A, w *Weight[A]) error { return o.dequant(y, w, nil, w.Rows) }

// dequant writes n rows of t as float32 to y: rows ids when ids is not
// nil, else rows 0..n-1; in chunks of at most MaxGridY rows.
func (o *Ops[A]) dequant(y A, t *Weight[A], ids []int, n int) error {
	idp, useIds := o.null, 0
	if ids != nil {
		st, err := o.dev.Stage(int32Bytes(ids))
		if err != nil {
			return err
		}
		idp, useIds = st[0], 1
	}
	step := n
	if o.lim.MaxGridY > 0 {
		step = o.lim.MaxGridY
	}
	th := o.lim.threads(kDequant, 256)
	for i0 := 0; i0 < n; i0 += step {
		l := o.launch(kDequant, (t.Cols+th-1)/th, min(step, n-i0), th, 0)
		l.ptr(t.Data).ptr(t.Scales).ptr(t.Biases).ptrAt(idp, i0).ptrAt(y, i0*t.Cols)
		l.i32(t.Cols).i32(t.Group).i32(int(t.Format)).i32(useIds).i32(i0)
		if err := o.dev.Launch(l); err != nil {
			return err
		}
	}
	return nil
}
