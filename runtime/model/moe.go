package model

import (
	"github.com/fmoe/fmoe/runtime/backend"
)

// moe is the sparse MoE block on the normed input xn; it adds the routed
// experts (weighted) and the sigmoid-gated shared expert to h. The tokens
// are grouped by expert so that each needed expert is read from disk once
// per step, whatever the batch size.
func (s *Session) moe(r *run, l int, L *layer, xn, h backend.Buffer, T int) error {
	m := s.m
	c := &m.Config
	be := m.be
	H, E, K := c.HiddenSize, c.NumExperts, m.K
	lg := r.view(s.sc.router, 0, T*E)
	r.do(be.MatMul(lg, L.router, xn, T))
	pl := &s.plan
	pl.reset(T, E, K)
	r.do(be.Read(pl.host, lg))
	if r.err != nil {
		return r.err
	}
	idx, wts := pl.idx, pl.wts
	for t := 0; t < T; t++ {
		if err := s.route(pl.host[t*E:(t+1)*E], l, t, idx[t*K:(t+1)*K], wts[t*K:(t+1)*K]); err != nil {
			return err
		}
	}
	if s.onRoute != nil {
		s.onRoute(l, idx, wts)
	}
	m.countPicks(l, idx)
	pl.group(K)
	s.lap(PhaseRouting)
	acc := r.view(s.sc.acc, 0, T*H)
	if err := s.routed(r, l, xn, acc, T); err != nil {
		return err
	}
	s.lap(PhaseCombine)
	// out = Σ_experts w·expert + sigmoid(g)·shared, then the residual add,
	// in transformers' order.
	if L.shGate != nil {
		Is := c.SharedExpertIntermediateSize
		sg := r.view(s.sc.sg, 0, T*Is)
		su := r.view(s.sc.su, 0, T*Is)
		sd := r.view(s.sc.sd, 0, T*H)
		r.do(be.MatMul(sg, L.shGate, xn, T))
		r.do(be.MatMul(su, L.shUp, xn, T))
		r.do(be.SwiGLU(sg, sg, su))
		r.do(be.MatMul(sd, L.shDown, sg, T))
		if L.shScale == nil { // GLM-4.5's shared experts are added as they are
			s.lap(PhaseSharedExpert)
			r.do(be.Add(acc, sd))
		} else {
			gt := r.view(s.sc.sgate, 0, T)
			r.do(be.MatMul(gt, L.shScale, xn, T))
			s.lap(PhaseSharedExpert)
			r.do(be.GatedAdd(acc, sd, gt, T))
		}
	}
	r.do(be.Add(h, acc))
	s.lap(PhaseCombine)
	return r.err
}
