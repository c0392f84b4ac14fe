package model

import (
	"errors"
	"fmt"

	"github.com/fmoe/fmoe/runtime/backend"
)

// attention is the gated full-attention mixer; it adds its output to h.
func (s *Session) attention(r *run, L *layer, st *layerState, xn, h backend.Buffer, T int) {
	m := s.m
	c := &m.Config
	be := m.be
	nh, nkv, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
	eps := float32(c.RMSNormEps)
	qRows, hs := nh*hd, hd
	if c.AttnOutputGate {
		qRows, hs = 2*nh*hd, 2*hd
	}
	r.do(s.growKV(st, s.pos+T))
	if r.err != nil {
		return
	}
	qg := r.view(s.sc.qg, 0, T*qRows)
	r.do(be.MatMul(qg, L.q, xn, T))
	// k and v go straight into the cache rows of their positions.
	kw := nkv * hd
	kc := r.view(st.k, s.pos*kw, T*kw)
	vc := r.view(st.v, s.pos*kw, T*kw)
	r.do(be.MatMul(kc, L.k, xn, T))
	r.do(be.MatMul(vc, L.v, xn, T))
	if L.qb != nil { // GLM-4.5's attention_bias
		s.addBias(r, qg, L.qb, T)
		s.addBias(r, kc, L.kb, T)
		s.addBias(r, vc, L.vb, T)
	}
	// q_proj emits [q_h | gate_h] per head when gated.
	ql := backend.Heads{T: T, H: nh, Dim: hd, RowStride: qRows, HeadStride: hs}
	kl := backend.Packed(T, nkv, hd)
	if L.qNorm != nil { // optional in GLM-4.5 (use_qk_norm)
		r.do(be.RMSNorm(qg, qg, ql, L.qNorm, eps))
		r.do(be.RMSNorm(kc, kc, kl, L.kNorm, eps))
	}
	r.do(be.Rope(qg, ql, c.RotaryDim, c.RopeTheta, s.pos))
	r.do(be.Rope(kc, kl, c.RotaryDim, c.RopeTheta, s.pos))
	ao := r.view(s.sc.ao, 0, T*nh*hd)
	var gate backend.Buffer
	gl := ql
	if c.AttnOutputGate {
		gate, gl.Off = qg, hd
	}
	r.do(be.Attention(ao, qg, gate, ql, gl, st.k, st.v, nkv, s.pos))
	o := r.view(s.sc.o, 0, T*c.HiddenSize)
	r.do(be.MatMul(o, L.o, ao, T))
	s.residual(r, h, o)
}

// addBias adds a [1, n] bias to each of the T rows of x ([T, n]): the bias
// is broadcast into the attention-output scratch (free until the attention
// writes it) by Embed of row 0, then added, so no backend needs an op of
// its own for it.
func (s *Session) addBias(r *run, x backend.Buffer, b backend.Tensor, T int) {
	if len(s.zeros) < T {
		s.zeros = make([]int, T)
	}
	tmp := r.view(s.sc.ao, 0, T*b.Cols())
	r.do(s.m.be.Embed(tmp, b, s.zeros[:T]))
	r.do(s.m.be.Add(x, tmp))
}

// growKV makes the layer's KV cache hold at least n positions, doubling
// so that decode reallocates O(log n) times.
func (s *Session) growKV(st *layerState, n int) error {
	if n <= st.cap {
		return nil
	}
	be := s.m.be
	nc := min(max(n, 2*st.cap, 256), s.m.maxCtx)
	if nc < n {
		return fmt.Errorf("KV cache of %d positions exceeds the context of %d", n, s.m.maxCtx)
	}
	for i, p := range []*backend.Buffer{&st.k, &st.v} {
		kw := st.kw
		if i == 1 {
			kw = st.vw
		}
		nb, err := be.Alloc(nc * kw)
		if err != nil {
			return err
		}
		if err := moveKV(be, nb, *p, s.pos*kw); err != nil {
			return errors.Join(err, be.Free(nb))
		}
		*p = nb
	}
	st.cap = nc
	return nil
}

// moveKV copies the first n values of old (nil when there is none) into
// nb and frees old: left to the garbage collector, which does not see
// device memory, the old caches of a long context fill a GPU.
func moveKV(be backend.Backend, nb, old backend.Buffer, n int) error {
	if old == nil {
		return nil
	}
	if n > 0 {
		dst, err := be.View(nb, 0, n)
		if err != nil {
			return err
		}
		src, err := be.View(old, 0, n)
		if err != nil {
			return err
		}
		if err := be.Copy(dst, src); err != nil {
			return err
		}
	}
	return be.Free(old)
}

// deltaNet is the GatedDeltaNet (linear attention) mixer; it adds its
// output to h.
func (s *Session) deltaNet(r *run, L *layer, st *layerState, xn, h backend.Buffer, T int) {
	m := s.m
	c := &m.Config
	be := m.be
	hv, dv := c.LinearNumValueHeads, c.LinearValueHeadDim
	var qkv, z, b, a backend.Buffer
	if cd, nz := c.ConvDim(), hv*dv; T == 1 && L.inProj != nil {
		// One launch (fuse.go): qkv, z, b and a one after the other in
		// qkv's scratch, which has the room for one token; with the input
		// norm folded in where the backend folds (normfold.go).
		all := r.view(s.sc.qkv, 0, cd+nz+2*hv)
		if s.foldsInputNorm(L, T) {
			H := c.HiddenSize
			s.normMatMul(r, backend.Norm{Y: xn, X: h, L: backend.Rows(1, H), W: L.inNorm, Eps: float32(c.RMSNormEps)}, all, L.inProj)
		} else {
			r.do(be.MatMul(all, L.inProj, xn, 1))
		}
		qkv = r.view(s.sc.qkv, 0, cd)
		z = r.view(s.sc.qkv, cd, nz)
		b = r.view(s.sc.qkv, cd+nz, hv)
		a = r.view(s.sc.qkv, cd+nz+hv, hv)
	} else {
		qkv = r.view(s.sc.qkv, 0, T*cd)
		z = r.view(s.sc.z, 0, T*nz)
		b = r.view(s.sc.b, 0, T*hv)
		a = r.view(s.sc.a, 0, T*hv)
		r.do(be.MatMul(qkv, L.qkv, xn, T))
		r.do(be.MatMul(z, L.z, xn, T))
		r.do(be.MatMul(b, L.b, xn, T))
		r.do(be.MatMul(a, L.a, xn, T))
	}
	r.do(be.Conv1D(qkv, qkv, L.conv, st.conv, T))
	y := r.view(s.sc.y, 0, T*hv*dv)
	shape := backend.DeltaShape{T: T, Hk: c.LinearNumKeyHeads, Dk: c.LinearKeyHeadDim, Hv: hv, Dv: dv, Eps: 1e-6}
	r.do(be.DeltaNet(y, qkv, a, b, L.aLog, L.dtBias, st.s, shape))
	o := r.view(s.sc.o, 0, T*c.HiddenSize)
	s.normMatMul(r, backend.Norm{Y: y, X: y, Z: z, L: backend.Packed(T, hv, dv), W: L.gNrm, Eps: float32(c.RMSNormEps), Gate: true}, o, L.out)
	s.residual(r, h, o)
}
