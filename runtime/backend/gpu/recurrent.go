package gpu

import (
	"fmt"
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
)

func (o *Ops[A]) Conv1D(y, x backend.Buffer, w backend.Tensor, state backend.Buffer, T int) error {
	var p [3]A // y, x, state
	var n [3]int
	if err := o.buffers(p[:], n[:], []string{"conv1d y", "conv1d x", "conv1d state"}, y, x, state); err != nil {
		return err
	}
	t, err := o.dev.Weight(w, "conv1d")
	if err != nil {
		return err
	}
	C, K := t.Rows, t.Cols
	if err := o.chk.Conv1D(C, K, T, n[1], n[0], n[2]); err != nil {
		return err
	}
	wp, err := o.dev.Vector(w, C*K, "conv1d")
	if err != nil {
		return err
	}
	th := o.lim.threads(kConv1D, 128)
	l := o.launch(kConv1D, (C+th-1)/th, 1, th, 0)
	l.ptr(p[0]).ptr(p[1]).ptr(wp).ptr(p[2]).i32(T).i32(C).i32(K)
	return o.dev.Launch(l)
}

func (o *Ops[A]) DeltaNet(y, qkv, a, b backend.Buffer, aLog, dtBias backend.Tensor, state backend.Buffer, s backend.DeltaShape) error {
	var p [5]A // y, qkv, a, b, state
	var n [5]int
	if err := o.buffers(p[:], n[:], []string{"deltanet y", "deltanet qkv", "deltanet a", "deltanet b", "deltanet state"},
		y, qkv, a, b, state); err != nil {
		return err
	}
	if err := o.chk.DeltaNet(s, n[1], n[2], n[3], n[0], n[4]); err != nil {
		return err
	}
	T, Hk, Dk, Hv, Dv := s.T, s.Hk, s.Dk, s.Hv, s.Dv
	al, err := o.dev.Vector(aLog, Hv, "deltanet A_log")
	if err != nil {
		return err
	}
	dt, err := o.dev.Vector(dtBias, Hv, "deltanet dt_bias")
	if err != nil {
		return err
	}
	// Ops of a device run in order, so one scratch serves every DeltaNet.
	qk, err := o.dev.Scratch(T * 2 * Hk * Dk)
	if err != nil {
		return err
	}
	// delta_step holds column j of S in the registers of ceil(Dk/32)
	// warps: it needs them all in one block.
	stepThreads := 32 * ((Dk + 31) / 32)
	if o.lim.MaxThreads != nil {
		if m := o.lim.MaxThreads(kDeltaStep); stepThreads > m {
			return fmt.Errorf("%s: deltanet key head dim %d needs %d threads per threadgroup, the pipeline allows %d",
				o.chk.Name, Dk, stepThreads, m)
		}
	}
	l := o.launch(kDeltaPrep, 2*Hk, T, 32, 0)
	l.ptr(qk).ptr(p[1]).i32(s.QKVLen()).i32(Hk).i32(Dk).f32(s.Eps).f32(float32(1 / math.Sqrt(float64(Dk))))
	if err := o.dev.Launch(l); err != nil {
		return err
	}
	l = o.launch(kDeltaStep, (Dv+31)/32, Hv, stepThreads, 0)
	l.ptr(p[0]).ptr(qk).ptr(p[1]).ptr(p[2]).ptr(p[3]).ptr(al).ptr(dt).ptr(p[4])
	l.i32(T).i32(Hk).i32(Dk).i32(Hv).i32(Dv)
	return o.dev.Launch(l)
}
