package metal

import (
	"fmt"
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
)

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
	if T <= 0 || Hk <= 0 || Dk <= 0 || Hv <= 0 || Dv <= 0 || Hv%Hk != 0 {
		return fmt.Errorf("metal: deltanet: bad shape %+v", s)
	}
	if Dk > deltaMaxDk {
		return fmt.Errorf("metal: deltanet key head dim %d exceeds the kernel's %d", Dk, deltaMaxDk)
	}
	W := s.QKVLen()
	if xb.n < T*W || ab.n < T*Hv || bb.n < T*Hv || yb.n < T*Hv*Dv || sb.n < s.StateLen() {
		return fmt.Errorf("metal: deltanet %+v: qkv %d (want %d), a %d, b %d (want %d), y %d (want %d), state %d (want %d) values",
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
	// Dispatches of one encoder run in order, so one scratch serves every
	// DeltaNet of a command buffer.
	if need := T * 2 * Hk * Dk; need > be.scratchLen {
		id, err := be.dev.newBuffer(4 * need)
		if err != nil {
			return err
		}
		if be.scratch != 0 {
			be.queueFree(be.scratch)
		}
		be.scratch, be.scratchLen = id, need
	}
	// delta_step holds column j of S in the registers of ceil(Dk/32) SIMD
	// groups: it needs them all in one threadgroup.
	stepThreads := 32 * ((Dk + 31) / 32)
	if m := be.dev.maxThreads("delta_step"); stepThreads > m {
		return fmt.Errorf("metal: deltanet key head dim %d needs %d threads per threadgroup, the pipeline allows %d", Dk, stepThreads, m)
	}
	qk := at(be.scratch, 0)
	be.run("delta_prep", 2*Hk, T, 32, 0, qk, xb.arg(0), i32(W), i32(Hk), i32(Dk), f32(s.Eps),
		f32(float32(1/math.Sqrt(float64(Dk)))))
	be.run("delta_step", (Dv+31)/32, Hv, stepThreads, 0, yb.arg(0), qk, xb.arg(0), ab.arg(0), bb.arg(0),
		al, dt, sb.arg(0), i32(T), i32(Hk), i32(Dk), i32(Hv), i32(Dv))
	return nil
}

// elementwise launches a 1-D kernel over n elements.
func (be *Backend) elementwise(kernel string, n int, args ...arg) {
	th := be.threads(kernel, 256)
	be.run(kernel, (n+th-1)/th, 1, th, 0, args...)
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
		return fmt.Errorf("metal: swiglu lengths y %d, gate %d, up %d differ", yb.n, gb.n, ub.n)
	}
	be.elementwise("swiglu", yb.n, yb.arg(0), gb.arg(0), ub.arg(0), i32(yb.n))
	return nil
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
		return fmt.Errorf("metal: gather of %d rows of %d into %d values", len(rows), n, db.n)
	}
	for _, r := range rows {
		if r < 0 || (r+1)*n > sb.n {
			return fmt.Errorf("metal: gather row %d out of range of a %d-value buffer", r, sb.n)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	st, err := be.stage(int32Bytes(rows))
	if err != nil {
		return err
	}
	be.elementwise("gather", len(rows)*n, db.arg(0), sb.arg(0), st[0], i32(n), i32(len(rows)*n))
	return nil
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
		return fmt.Errorf("metal: scatter-add of %d rows of %d (%d weights) from %d values", len(rows), n, len(weights), sb.n)
	}
	for _, r := range rows {
		if r < 0 || (r+1)*n > db.n {
			return fmt.Errorf("metal: scatter-add row %d out of range of a %d-value buffer", r, db.n)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	st, err := be.stage(int32Bytes(rows), floatBytes(weights))
	if err != nil {
		return err
	}
	be.elementwise("scatter_add", n, db.arg(0), sb.arg(0), st[0], st[1], i32(n), i32(len(rows)))
	return nil
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
		return fmt.Errorf("metal: gated add of T=%d: h %d, x %d, gate %d values", T, hb.n, xb.n, gb.n)
	}
	be.elementwise("gated_add", hb.n, hb.arg(0), xb.arg(0), gb.arg(0), i32(hb.n/T), i32(hb.n))
	return nil
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
		return fmt.Errorf("metal: add of %d values to %d", sb.n, db.n)
	}
	be.elementwise("add", db.n, db.arg(0), sb.arg(0), i32(db.n))
	return nil
}
