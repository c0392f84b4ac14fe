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
// residual left pending, if any. It leaves the add pending: a graph
// recording that fails runs its ops again without the graph (graph.go's
// replay), and those must add too. The next layer's mixer clears it
// (clearResidual), before its own add.
func (s *Session) normResidual(r *run, xn, h backend.Buffer, l backend.Heads, w backend.Tensor, eps float32) {
	if s.pendAdd == nil {
		r.do(s.m.be.RMSNorm(xn, h, l, w, eps))
		return
	}
	r.do(s.m.be.(backend.AddNormer).AddRMSNorm(xn, h, s.pendAdd, l, w, eps))
}

// clearResidual forgets an add the norm has taken (at a layer's start, and
// a step's: one that failed mid-layer may have left one).
func (s *Session) clearResidual() { s.pendAdd = nil }
