package model

import "github.com/fmoe/fmoe/runtime/backend"

// A norm folded into the one-token MatMul that reads its output
// (backend.NormMatMuler: CUDA stages the integer matvec's x in the norm's
// own launch). A GatedDeltaNet layer's input norm goes with its fused
// in-projection and its gated norm with out_proj; the results are the
// separate calls' bit for bit (the contract), so the fold changes only the
// launches.

// normFoldOff keeps the norms apart (tests compare the two).
var normFoldOff = false

// normFolder is the backend's NormMatMuler for a one-token step, if any.
func (s *Session) normFolder(T int) (backend.NormMatMuler, bool) {
	if normFoldOff || T != 1 {
		return nil, false
	}
	nm, ok := s.m.be.(backend.NormMatMuler)
	return nm, ok
}

// foldsInputNorm reports whether layer L's mixer takes its input norm into
// its in-projection (deltaNet then norms h into xn itself).
func (s *Session) foldsInputNorm(L *layer, T int) bool {
	_, ok := s.normFolder(T)
	return ok && !L.full && L.mix == nil && L.inProj != nil
}

// normMatMul queues n, then y = w·n.Y, folded where the backend folds.
func (s *Session) normMatMul(r *run, n backend.Norm, y backend.Buffer, w backend.Tensor) {
	if nm, ok := s.normFolder(n.L.T); ok {
		r.do(nm.NormMatMul(n, y, w))
		return
	}
	r.do(n.Apply(s.m.be))
	r.do(s.m.be.MatMul(y, w, n.Y, n.L.T))
}
