package metal

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Kernel limits, as in the bodies (attention.h, recurrent.h).
const (
	attMaxDim   = 32 * 8 // 32·ATT_MAXI
	attMaxWarps = 8      // ATT_MAXW
	convMaxK    = 8      // CONV_MAXK
	deltaMaxDk  = 32 * 8 // 32·DELTA_MAXW
)

func checkHeads(l backend.Heads, n int, what string) error {
	if l.T <= 0 || l.H <= 0 || l.Dim <= 0 || l.Off < 0 || l.RowStride < 0 || l.HeadStride < 0 {
		return fmt.Errorf("metal: %s: bad layout %+v", what, l)
	}
	if s := l.Span(); s > n {
		return fmt.Errorf("metal: %s: layout %+v spans %d values, buffer has %d", what, l, s, n)
	}
	return nil
}

// normThreads is the threadgroup size for a reduction over dim values: a
// multiple of 32 (block_sum's contract), at most 256.
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
	wa, flags := at(be.dummy, 0), 0
	if w != nil {
		if wa, err = be.vector(w, l.Dim, "rmsnorm"); err != nil {
			return err
		}
		flags = 1
	}
	be.norm(yb, xb, at(be.dummy, 0), wa, l, eps, flags)
	return nil
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
	wa, err := be.vector(w, l.Dim, "gated rmsnorm")
	if err != nil {
		return err
	}
	be.norm(yb, xb, zb.arg(0), wa, l, eps, 3)
	return nil
}

func (be *Backend) norm(y, x *buf, z, w arg, l backend.Heads, eps float32, flags int) {
	be.run("rmsnorm", l.H, l.T, be.threads("rmsnorm", normThreads(l.Dim)), 0, y.arg(0), x.arg(0), z, w,
		i32(l.Dim), i32(l.RowStride), i32(l.HeadStride), i32(l.Off), f32(eps), i32(flags))
}

// Rope stages a cos/sin table computed in float64 on the host (Metal has
// no double, and float32 angles lose the phase at long positions).
func (be *Backend) Rope(x backend.Buffer, l backend.Heads, rotaryDim int, theta float64, pos0 int) error {
	xb, err := be.data(x, "rope")
	if err != nil {
		return err
	}
	if err := checkHeads(l, xb.n, "rope"); err != nil {
		return err
	}
	if rotaryDim <= 0 || rotaryDim%2 != 0 || rotaryDim > l.Dim || pos0 < 0 || !(theta > 0) {
		return fmt.Errorf("metal: rope: rotary dim %d of head dim %d, theta %v, pos0 %d", rotaryDim, l.Dim, theta, pos0)
	}
	half := rotaryDim / 2
	tab := make([]float32, l.T*2*half)
	for t := 0; t < l.T; t++ {
		p := float64(pos0 + t)
		for i := 0; i < half; i++ {
			a := p * math.Pow(theta, -float64(2*i)/float64(rotaryDim))
			tab[t*2*half+i], tab[t*2*half+half+i] = float32(math.Cos(a)), float32(math.Sin(a))
		}
	}
	st, err := be.stage(floatBytes(tab))
	if err != nil {
		return err
	}
	th := be.threads("rope", 128)
	be.run("rope", (l.H*half+th-1)/th, l.T, th, 0, xb.arg(0), st[0],
		i32(l.H), i32(half), i32(l.RowStride), i32(l.HeadStride), i32(l.Off))
	return nil
}

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
	ga, hasGate := at(be.dummy, 0), 0
	if gate != nil {
		gb, err := be.data(gate, "attention gate")
		if err != nil {
			return err
		}
		if gl.T != ql.T || gl.H != ql.H || gl.Dim != ql.Dim {
			return fmt.Errorf("metal: attention gate layout %+v does not match q %+v", gl, ql)
		}
		if err := checkHeads(gl, gb.n, "attention gate"); err != nil {
			return err
		}
		ga, hasGate = gb.arg(0), 1
	} else {
		gl = backend.Heads{}
	}
	T, H, D := ql.T, ql.H, ql.Dim
	if kvHeads <= 0 || H%kvHeads != 0 || pos0 < 0 {
		return fmt.Errorf("metal: attention: %d query heads over %d KV heads, pos0 %d", H, kvHeads, pos0)
	}
	if D > attMaxDim {
		return fmt.Errorf("metal: attention head dim %d exceeds the kernel's %d", D, attMaxDim)
	}
	kvw, n := kvHeads*D, pos0+T
	if kb.n < n*kvw || vb.n < n*kvw {
		return fmt.Errorf("metal: attention over %d positions needs %d cache values, k has %d, v %d", n, n*kvw, kb.n, vb.n)
	}
	if ob.n < T*H*D {
		return fmt.Errorf("metal: attention out has %d values, want %d", ob.n, T*H*D)
	}
	warps := min(attMaxWarps, max(1, (n+15)/16), be.dev.maxThreads("attention")/32)
	be.run("attention", H, T, 32*warps, 0, ob.arg(0), qb.arg(0), ga, kb.arg(0), vb.arg(0),
		i32(H), i32(D), i32(kvHeads), i32(pos0), i32(ql.RowStride), i32(ql.HeadStride), i32(ql.Off),
		i32(gl.RowStride), i32(gl.HeadStride), i32(gl.Off), i32(hasGate), f32(float32(1/math.Sqrt(float64(D)))))
	return nil
}

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
	t, err := be.tensor(w, "conv1d")
	if err != nil {
		return err
	}
	C, K := t.rows, t.cols
	if T <= 0 || K < 1 || K > convMaxK || xb.n < T*C || yb.n < T*C || sb.n < (K-1)*C {
		return fmt.Errorf("metal: conv1d [%d, %d] taps (at most %d), T=%d: x %d, y %d, state %d values",
			C, K, convMaxK, T, xb.n, yb.n, sb.n)
	}
	wa, err := be.vector(w, C*K, "conv1d")
	if err != nil {
		return err
	}
	th := be.threads("conv1d", 128)
	be.run("conv1d", (C+th-1)/th, 1, th, 0, yb.arg(0), xb.arg(0), wa, sb.arg(0), i32(T), i32(C), i32(K))
	return nil
}

func f32bits(v float32) uint32 { return *(*uint32)(unsafe.Pointer(&v)) }
