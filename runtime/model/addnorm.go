package model

import "github.com/fmoe/fmoe/runtime/backend"

// The residual add after a layer's mixer and the RMSNorm after that add
// are one launch where the backend fuses them (backend.AddNormer, the GPU
// backends): the mixer leaves its output pending (residual) and the norm
// adds it first (normResidual). Every mixer's add is followed by the
// layer's post-mixer norm (session.go's postNorm, the first op of every
// tail), so nothing reads the residual stream in between.

// addNormOff keeps the add and the norm apart (tests compare the two).
var addNormOff = false

// residual adds a mixer's output o into the residual stream h, or leaves
// the add to the post-mixer norm where the backend fuses the two.
func (s *Session) residual(r *run, h, o backend.Buffer) {
	if _, ok := s.m.be.(backend.AddNormer); ok && !addNormOff {
		s.pendAdd = o
		return
	}
	r.do(s.m.be.Add(h, o))
}

// normResidual is the post-mixer norm xn = RMSNorm(h), after the add that
// residual left pending, if any.
func (s *Session) normResidual(r *run, xn, h backend.Buffer, l backend.Heads, w backend.Tensor, eps float32) {
	o := s.pendAdd
	s.pendAdd = nil
	if o == nil {
		r.do(s.m.be.RMSNorm(xn, h, l, w, eps))
		return
	}
	r.do(s.m.be.(backend.AddNormer).AddRMSNorm(xn, h, o, l, w, eps))
}
