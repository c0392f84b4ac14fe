//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
)

// deltaMaxDk mirrors DELTA_MAXW·32 in recurrent.h.
const deltaMaxDk = 256

func (be *Backend) DeltaNet(y, qkv, a, b backend.Buffer, aLog, dtBias backend.Tensor, state backend.Buffer, s backend.DeltaShape) error {
	yb, err := be.data(y, "deltanet y")
	if err != nil {
		return err
	}
	xb, err := be.data(qkv, "deltanet qkv")
	if err != nil {
		return err
	}
	ab, err := be.data(a, "deltanet a")
	if err != nil {
		return err
	}
	bb, err := be.data(b, "deltanet b")
	if err != nil {
		return err
	}
	sb, err := be.data(state, "deltanet state")
	if err != nil {
		return err
	}
	T, Hk, Dk, Hv, Dv := s.T, s.Hk, s.Dk, s.Hv, s.Dv
	if T <= 0 || Hk <= 0 || Dk <= 0 || Hv <= 0 || Dv <= 0 || Hv%Hk != 0 || T > maxGridY || Hv > maxGridY {
		return fmt.Errorf("cuda: deltanet: bad shape %+v", s)
	}
	if Dk > deltaMaxDk {
		return fmt.Errorf("cuda: deltanet key head dim %d exceeds the kernel's %d", Dk, deltaMaxDk)
	}
	W := s.QKVLen()
	if xb.n < T*W || ab.n < T*Hv || bb.n < T*Hv || yb.n < T*Hv*Dv || sb.n < s.StateLen() {
		return fmt.Errorf("cuda: deltanet %+v: qkv %d (want %d), a %d, b %d (want %d), y %d (want %d), state %d (want %d) values",
			s, xb.n, T*W, ab.n, bb.n, T*Hv, yb.n, T*Hv*Dv, sb.n, s.StateLen())
	}
	al, err := be.vector(aLog, Hv, "deltanet A_log")
	if err != nil {
		return err
	}
	dt, err := be.vector(dtBias, Hv, "deltanet dt_bias")
	if err != nil {
		return err
	}
	qk, err := be.grow(&be.work, 4*T*2*Hk*Dk)
	if err != nil {
		return err
	}
	be.args.reset()
	be.args.ptr(qk).ptr(xb.ptr).i32(W).i32(Hk).i32(Dk).f32(s.Eps).f32(float32(1 / math.Sqrt(float64(Dk))))
	if err := be.launch(be.k.deltaPrep, 2*Hk, T, 32, 0); err != nil {
		return err
	}
	be.args.reset()
	be.args.ptr(yb.ptr).ptr(qk).ptr(xb.ptr).ptr(ab.ptr).ptr(bb.ptr).ptr(al).ptr(dt).ptr(sb.ptr)
	be.args.i32(T).i32(Hk).i32(Dk).i32(Hv).i32(Dv)
	return be.launch(be.k.deltaStep, (Dv+31)/32, Hv, 32*((Dk+31)/32), 0)
}

// elementwise launches a 1-D kernel over n elements.
func (be *Backend) elementwise(f C.CUfunction, n int) error {
	return be.launch(f, (n+255)/256, 1, 256, 0)
}

func (be *Backend) SwiGLU(y, g, u backend.Buffer) error {
	yb, err := be.data(y, "swiglu y")
	if err != nil {
		return err
	}
	gb, err := be.data(g, "swiglu gate")
	if err != nil {
		return err
	}
	ub, err := be.data(u, "swiglu up")
	if err != nil {
		return err
	}
	if gb.n != yb.n || ub.n != yb.n {
		return fmt.Errorf("cuda: swiglu lengths y %d, gate %d, up %d differ", yb.n, gb.n, ub.n)
	}
	be.args.reset()
	be.args.ptr(yb.ptr).ptr(gb.ptr).ptr(ub.ptr).i32(yb.n)
	return be.elementwise(be.k.swiglu, yb.n)
}

func (be *Backend) Gather(dst, src backend.Buffer, rows []int, n int) error {
	db, err := be.data(dst, "gather dst")
	if err != nil {
		return err
	}
	sb, err := be.data(src, "gather src")
	if err != nil {
		return err
	}
	if n <= 0 || db.n < len(rows)*n {
		return fmt.Errorf("cuda: gather of %d rows of %d into %d values", len(rows), n, db.n)
	}
	for _, r := range rows {
		if r < 0 || (r+1)*n > sb.n {
			return fmt.Errorf("cuda: gather row %d out of range of a %d-value buffer", r, sb.n)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	p, err := be.upload(int32s(rows, nil))
	if err != nil {
		return err
	}
	be.args.reset()
	be.args.ptr(db.ptr).ptr(sb.ptr).ptr(p).i32(n).i32(len(rows) * n)
	return be.elementwise(be.k.gather, len(rows)*n)
}

// int32s encodes rows (then weights, if any) for upload.
func int32s(rows []int, weights []float32) []byte {
	b := make([]byte, 4*(len(rows)+len(weights)))
	for i, r := range rows {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(r))
	}
	for i, w := range weights {
		binary.LittleEndian.PutUint32(b[4*(len(rows)+i):], math.Float32bits(w))
	}
	return b
}

func (be *Backend) ScatterAdd(dst, src backend.Buffer, rows []int, weights []float32, n int) error {
	db, err := be.data(dst, "scatter dst")
	if err != nil {
		return err
	}
	sb, err := be.data(src, "scatter src")
	if err != nil {
		return err
	}
	if n <= 0 || len(weights) != len(rows) || sb.n < len(rows)*n {
		return fmt.Errorf("cuda: scatter-add of %d rows of %d (%d weights) from %d values", len(rows), n, len(weights), sb.n)
	}
	for _, r := range rows {
		if r < 0 || (r+1)*n > db.n {
			return fmt.Errorf("cuda: scatter-add row %d out of range of a %d-value buffer", r, db.n)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	p, err := be.upload(int32s(rows, weights))
	if err != nil {
		return err
	}
	be.args.reset()
	be.args.ptr(db.ptr).ptr(sb.ptr).ptr(p).ptr(p + C.CUdeviceptr(4*len(rows))).i32(n).i32(len(rows))
	return be.elementwise(be.k.scatterAdd, n)
}

func (be *Backend) GatedAdd(h, x, gate backend.Buffer, T int) error {
	hb, err := be.data(h, "gated add h")
	if err != nil {
		return err
	}
	xb, err := be.data(x, "gated add x")
	if err != nil {
		return err
	}
	gb, err := be.data(gate, "gated add gate")
	if err != nil {
		return err
	}
	if T <= 0 || hb.n%T != 0 || xb.n < hb.n || gb.n < T {
		return fmt.Errorf("cuda: gated add of T=%d: h %d, x %d, gate %d values", T, hb.n, xb.n, gb.n)
	}
	if hb.n == 0 {
		return nil
	}
	be.args.reset()
	be.args.ptr(hb.ptr).ptr(xb.ptr).ptr(gb.ptr).i32(hb.n / T).i32(hb.n)
	return be.elementwise(be.k.gatedAdd, hb.n)
}

func (be *Backend) Add(dst, src backend.Buffer) error {
	db, err := be.data(dst, "add dst")
	if err != nil {
		return err
	}
	sb, err := be.data(src, "add src")
	if err != nil {
		return err
	}
	if db.n != sb.n {
		return fmt.Errorf("cuda: add of %d values to %d", sb.n, db.n)
	}
	be.args.reset()
	be.args.ptr(db.ptr).ptr(sb.ptr).i32(db.n)
	return be.elementwise(be.k.add, db.n)
}
