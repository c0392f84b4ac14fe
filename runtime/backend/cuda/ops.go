//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend"
)

func checkHeads(l backend.Heads, n int, what string) error {
	if l.T <= 0 || l.H <= 0 || l.Dim <= 0 || l.Off < 0 || l.RowStride < 0 || l.HeadStride < 0 {
		return fmt.Errorf("cuda: %s: bad layout %+v", what, l)
	}
	if l.T > maxGridY || l.H > maxGridY {
		return fmt.Errorf("cuda: %s: layout %+v has more than %d tokens or heads", what, l, maxGridY)
	}
	if s := l.Span(); s > n {
		return fmt.Errorf("cuda: %s: layout %+v spans %d values, buffer has %d", what, l, s, n)
	}
	return nil
}

// normThreads is the block size for per-vector reductions over dim values.
func normThreads(dim int) int { return min(256, max(32, (dim+31)&^31)) }

func (be *Backend) RMSNorm(y, x backend.Buffer, l backend.Heads, w backend.Tensor, eps float32) error {
	yb, err := be.data(y, "rmsnorm y")
	if err != nil {
		return err
	}
	xb, err := be.data(x, "rmsnorm x")
	if err != nil {
		return err
	}
	if err := checkHeads(l, min(xb.n, yb.n), "rmsnorm"); err != nil {
		return err
	}
	var wp C.CUdeviceptr
	flags := 0
	if w != nil {
		if wp, err = be.vector(w, l.Dim, "rmsnorm"); err != nil {
			return err
		}
		flags = 1
	}
	return be.norm(yb.ptr, xb.ptr, 0, wp, l, eps, flags)
}

func (be *Backend) GatedRMSNorm(y, x, z backend.Buffer, l backend.Heads, w backend.Tensor, eps float32) error {
	yb, err := be.data(y, "gated rmsnorm y")
	if err != nil {
		return err
	}
	xb, err := be.data(x, "gated rmsnorm x")
	if err != nil {
		return err
	}
	zb, err := be.data(z, "gated rmsnorm z")
	if err != nil {
		return err
	}
	if err := checkHeads(l, min(xb.n, yb.n, zb.n), "gated rmsnorm"); err != nil {
		return err
	}
	wp, err := be.vector(w, l.Dim, "gated rmsnorm")
	if err != nil {
		return err
	}
	return be.norm(yb.ptr, xb.ptr, zb.ptr, wp, l, eps, 3)
}

func (be *Backend) norm(y, x, z, w C.CUdeviceptr, l backend.Heads, eps float32, flags int) error {
	be.args.reset()
	be.args.ptr(y).ptr(x).ptr(z).ptr(w).i32(l.Dim).i32(l.RowStride).i32(l.HeadStride).i32(l.Off).f32(eps).i32(flags)
	return be.launch(be.k.rmsnorm, l.H, l.T, normThreads(l.Dim), 0)
}

// ropeKey identifies the cos/sin table last uploaded: the q and k calls of
// a layer, and every attention layer of a step, share one.
type ropeKey struct {
	T, rot, pos0 int
	theta        float64
}

func (be *Backend) Rope(x backend.Buffer, l backend.Heads, rotaryDim int, theta float64, pos0 int) error {
	xb, err := be.data(x, "rope")
	if err != nil {
		return err
	}
	if err := checkHeads(l, xb.n, "rope"); err != nil {
		return err
	}
	if rotaryDim <= 0 || rotaryDim%2 != 0 || rotaryDim > l.Dim || pos0 < 0 || !(theta > 0) {
		return fmt.Errorf("cuda: rope: rotary dim %d of head dim %d, theta %v, pos0 %d", rotaryDim, l.Dim, theta, pos0)
	}
	half := rotaryDim / 2
	key := ropeKey{l.T, rotaryDim, pos0, theta}
	if key != be.ropeKey || be.ropeTab.ptr == 0 {
		// Angles in float64 on the host: at long positions pos·inv_freq
		// loses its phase in float32.
		tab := make([]float32, l.T*2*half)
		for t := 0; t < l.T; t++ {
			p := float64(pos0 + t)
			for i := 0; i < half; i++ {
				a := p * math.Pow(theta, -float64(2*i)/float64(rotaryDim))
				tab[t*2*half+i], tab[t*2*half+half+i] = float32(math.Cos(a)), float32(math.Sin(a))
			}
		}
		p, err := be.grow(&be.ropeTab, 4*len(tab))
		if err != nil {
			return err
		}
		if err := cuErr(C.fm_htod(be.ctx, p, unsafe.Pointer(&tab[0]), C.size_t(4*len(tab)), be.stream), "rope table"); err != nil {
			return err
		}
		be.ropeKey = key
	}
	be.args.reset()
	be.args.ptr(xb.ptr).ptr(be.ropeTab.ptr).i32(l.H).i32(half).i32(l.RowStride).i32(l.HeadStride).i32(l.Off)
	return be.launch(be.k.rope, (l.H*half+127)/128, l.T, 128, 0)
}

// attMaxDim and attMaxWarps mirror ATT_MAXI·32 and ATT_MAXW in attention.h.
const (
	attMaxDim   = 256
	attMaxWarps = 8
)

func (be *Backend) Attention(out, q, gate backend.Buffer, ql, gl backend.Heads, k, v backend.Buffer, kvHeads, pos0 int) error {
	ob, err := be.data(out, "attention out")
	if err != nil {
		return err
	}
	qb, err := be.data(q, "attention q")
	if err != nil {
		return err
	}
	kb, err := be.data(k, "attention k")
	if err != nil {
		return err
	}
	vb, err := be.data(v, "attention v")
	if err != nil {
		return err
	}
	if err := checkHeads(ql, qb.n, "attention q"); err != nil {
		return err
	}
	var gp C.CUdeviceptr
	hasGate := 0
	if gate != nil {
		gb, err := be.data(gate, "attention gate")
		if err != nil {
			return err
		}
		if gl.T != ql.T || gl.H != ql.H || gl.Dim != ql.Dim {
			return fmt.Errorf("cuda: attention gate layout %+v does not match q %+v", gl, ql)
		}
		if err := checkHeads(gl, gb.n, "attention gate"); err != nil {
			return err
		}
		gp, hasGate = gb.ptr, 1
	} else {
		gl = backend.Heads{}
	}
	T, H, D := ql.T, ql.H, ql.Dim
	if kvHeads <= 0 || H%kvHeads != 0 || pos0 < 0 {
		return fmt.Errorf("cuda: attention: %d query heads over %d KV heads, pos0 %d", H, kvHeads, pos0)
	}
	if D > attMaxDim {
		return fmt.Errorf("cuda: attention head dim %d exceeds the kernel's %d", D, attMaxDim)
	}
	kvw := kvHeads * D
	n := pos0 + T
	if kb.n < n*kvw || vb.n < n*kvw {
		return fmt.Errorf("cuda: attention over %d positions needs %d cache values, k has %d, v %d", n, n*kvw, kb.n, vb.n)
	}
	if ob.n < T*H*D {
		return fmt.Errorf("cuda: attention out has %d values, want %d", ob.n, T*H*D)
	}
	warps := min(attMaxWarps, max(1, (n+15)/16))
	be.args.reset()
	be.args.ptr(ob.ptr).ptr(qb.ptr).ptr(gp).ptr(kb.ptr).ptr(vb.ptr).i32(H).i32(D).i32(kvHeads).i32(pos0)
	be.args.i32(ql.RowStride).i32(ql.HeadStride).i32(ql.Off).i32(gl.RowStride).i32(gl.HeadStride).i32(gl.Off)
	be.args.i32(hasGate).f32(float32(1 / math.Sqrt(float64(D))))
	return be.launch(be.k.attention, H, T, 32*warps, 0)
}

// convMaxK mirrors CONV_MAXK in recurrent.h.
const convMaxK = 8

func (be *Backend) Conv1D(y, x backend.Buffer, w backend.Tensor, state backend.Buffer, T int) error {
	yb, err := be.data(y, "conv1d y")
	if err != nil {
		return err
	}
	xb, err := be.data(x, "conv1d x")
	if err != nil {
		return err
	}
	sb, err := be.data(state, "conv1d state")
	if err != nil {
		return err
	}
	wt, err := be.tensor(w, "conv1d")
	if err != nil {
		return err
	}
	nc, K := wt.rows, wt.cols
	if T <= 0 || K < 1 || xb.n < T*nc || yb.n < T*nc || sb.n < (K-1)*nc {
		return fmt.Errorf("cuda: conv1d [%d, %d] taps, T=%d: x %d, y %d, state %d values", nc, K, T, xb.n, yb.n, sb.n)
	}
	if K > convMaxK {
		return fmt.Errorf("cuda: conv1d kernel size %d exceeds the kernel's %d", K, convMaxK)
	}
	wp, err := be.vector(w, nc*K, "conv1d")
	if err != nil {
		return err
	}
	be.args.reset()
	be.args.ptr(yb.ptr).ptr(xb.ptr).ptr(wp).ptr(sb.ptr).i32(T).i32(nc).i32(K)
	return be.launch(be.k.conv1d, (nc+127)/128, 1, 128, 0)
}
