package gpu

import (
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
)

// normThreads is the block size for a reduction over dim values: a
// multiple of 32 (block_sum's contract), one thread a value up to 256, and
// past 2,048 values enough threads that each holds at most normUnroll of
// them (at most 1,024 threads). A model's hidden vector is one block's
// work, so its norm is a chain of load rounds: at 256 threads a 4,096-wide
// vector took two rounds before the sum and two after (7.4 µs alone on an
// H100, docs/benchmarks.md run 24), at 512 one each.
func normThreads(dim int) int {
	n := max(min(256, dim), (dim+normUnroll-1)/normUnroll)
	return min(1024, max(32, (n+31)&^31))
}

// normUnroll is norm.h's NORM_UNROLL: the values a thread loads at once.
const normUnroll = 8

// NormThreads is the block size the rmsnorm kernel runs a vector of dim
// with: a kernel that reuses its body must use it too (the same sums).
func (o *Ops[A]) NormThreads(dim int) int { return o.lim.threads(kRMSNorm, normThreads(dim)) }

func (o *Ops[A]) RMSNorm(y, x backend.Buffer, l backend.Heads, w backend.Tensor, eps float32) error {
	var p [2]A
	var n [2]int
	if err := o.buffers(p[:], n[:], []string{"rmsnorm y", "rmsnorm x"}, y, x); err != nil {
		return err
	}
	if err := o.chk.Heads(l, min(n[0], n[1]), "rmsnorm"); err != nil {
		return err
	}
	wp, flags := o.null, 0
	if w != nil {
		var err error
		if wp, err = o.dev.Vector(w, l.Dim, "rmsnorm"); err != nil {
			return err
		}
		flags = 1
	}
	return o.norm(p[0], p[1], o.null, wp, l, eps, flags)
}

func (o *Ops[A]) GatedRMSNorm(y, x, z backend.Buffer, l backend.Heads, w backend.Tensor, eps float32) error {
	var p [3]A
	var n [3]int
	if err := o.buffers(p[:], n[:], []string{"gated rmsnorm y", "gated rmsnorm x", "gated rmsnorm z"}, y, x, z); err != nil {
		return err
	}
	if err := o.chk.Heads(l, min(n[0], n[1], n[2]), "gated rmsnorm"); err != nil {
		return err
	}
	wp, err := o.dev.Vector(w, l.Dim, "gated rmsnorm")
	if err != nil {
		return err
	}
	return o.norm(p[0], p[1], p[2], wp, l, eps, 3)
}

var _ backend.AddNormer = (*Ops[int])(nil)

// AddRMSNorm is backend.AddNormer: rmsnorm's residual mode (flags bit 2)
// adds o into h as add does, then normalises h into y, in one launch.
func (o *Ops[A]) AddRMSNorm(y, h, r backend.Buffer, l backend.Heads, w backend.Tensor, eps float32) error {
	var p [3]A
	var n [3]int
	if err := o.buffers(p[:], n[:], []string{"add rmsnorm y", "add rmsnorm h", "add rmsnorm residual"}, y, h, r); err != nil {
		return err
	}
	if err := o.chk.Heads(l, min(n[0], n[1], n[2]), "add rmsnorm"); err != nil {
		return err
	}
	wp, flags := o.null, 4
	if w != nil {
		var err error
		if wp, err = o.dev.Vector(w, l.Dim, "add rmsnorm"); err != nil {
			return err
		}
		flags |= 1
	}
	return o.norm(p[0], p[1], p[2], wp, l, eps, flags)
}

// norm launches rmsnorm; flags bit 0 multiplies by w, bit 1 gates by
// silu(z), bit 2 first adds z into x.
func (o *Ops[A]) norm(y, x, z, w A, l backend.Heads, eps float32, flags int) error {
	k := o.launch(kRMSNorm, l.H, l.T, o.lim.threads(kRMSNorm, normThreads(l.Dim)), 0)
	k.ptr(y).ptr(x).ptr(z).ptr(w).i32(l.Dim).i32(l.RowStride).i32(l.HeadStride).i32(l.Off).f32(eps).i32(flags)
	return o.dev.Launch(k)
}

// Rope uses a cos/sin table computed in float64 on the host: Metal has
// no double, and float32 angles lose the phase at long positions.
func (o *Ops[A]) Rope(x backend.Buffer, l backend.Heads, rotaryDim int, theta float64, pos0 int) error {
	xp, nx, err := o.dev.Buffer(x, "rope")
	if err != nil {
		return err
	}
	if err := o.chk.Rope(l, nx, rotaryDim, theta, pos0); err != nil {
		return err
	}
	half := rotaryDim / 2
	tab, err := o.dev.RopeTable(RopeKey{l.T, rotaryDim, pos0, theta}, func() []float32 {
		tab := make([]float32, l.T*2*half)
		for t := 0; t < l.T; t++ {
			p := float64(pos0 + t)
			for i := 0; i < half; i++ {
				a := p * math.Pow(theta, -float64(2*i)/float64(rotaryDim))
				tab[t*2*half+i], tab[t*2*half+half+i] = float32(math.Cos(a)), float32(math.Sin(a))
			}
		}
		return tab
	})
	if err != nil {
		return err
	}
	th := o.lim.threads(kRope, 128)
	k := o.launch(kRope, (l.H*half+th-1)/th, l.T, th, 0)
	k.ptr(xp).ptr(tab).i32(l.H).i32(half).i32(l.RowStride).i32(l.HeadStride).i32(l.Off)
	return o.dev.Launch(k)
}

func (o *Ops[A]) Attention(out, q, gate backend.Buffer, ql, gl backend.Heads, k, v backend.Buffer, kvHeads, pos0 int) error {
	var p [4]A // out, q, k, v
	var n [4]int
	if err := o.buffers(p[:], n[:], []string{"attention out", "attention q", "attention k", "attention v"},
		out, q, k, v); err != nil {
		return err
	}
	if err := o.chk.Heads(ql, n[1], "attention q"); err != nil {
		return err
	}
	gp, hasGate := o.null, 0
	if gate != nil {
		g, ng, err := o.dev.Buffer(gate, "attention gate")
		if err != nil {
			return err
		}
		if err := o.chk.AttentionGate(ql, gl, ng); err != nil {
			return err
		}
		gp, hasGate = g, 1
	} else {
		gl = backend.Heads{}
	}
	if err := o.chk.Attention(ql, kvHeads, pos0, n[2], n[3], n[0]); err != nil {
		return err
	}
	T, H, D := ql.T, ql.H, ql.Dim
	warps := o.lim.warps(kAttention, min(attMaxWarps, max(1, (pos0+T+15)/16)))
	l := o.launch(kAttention, H, T, 32*warps, 0)
	l.ptr(p[0]).ptr(p[1]).ptr(gp).ptr(p[2]).ptr(p[3]).i32(H).i32(D).i32(kvHeads).i32(pos0)
	l.i32(ql.RowStride).i32(ql.HeadStride).i32(ql.Off).i32(gl.RowStride).i32(gl.HeadStride).i32(gl.Off)
	l.i32(hasGate).f32(float32(1 / math.Sqrt(float64(D))))
	return o.dev.Launch(l)
}
