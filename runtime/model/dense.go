package model

import "github.com/fmoe/fmoe/runtime/backend"

// denseMLP is a dense layer's MLP on the normed input xn (down(silu(gate·x) ⊙ up·x)); it adds
// its output to h. Its time counts as shared_expert: resident-weight MLP compute, like the
// shared expert's.
func (s *Session) denseMLP(r *run, L *layer, xn, h backend.Buffer, T int) {
	be := s.m.be
	I, H := s.m.Config.IntermediateSize, s.m.Config.HiddenSize
	g := r.view(s.sc.sg, 0, T*I)
	u := r.view(s.sc.su, 0, T*I)
	d := r.view(s.sc.sd, 0, T*H)
	r.do(be.MatMul(g, L.mlpGate, xn, T))
	r.do(be.MatMul(u, L.mlpUp, xn, T))
	r.do(be.SwiGLU(g, g, u))
	r.do(be.MatMul(d, L.mlpDown, g, T))
	s.lap(PhaseSharedExpert)
	r.do(be.Add(h, d))
	s.lap(PhaseCombine)
}
