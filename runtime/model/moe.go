package model

import (
	"github.com/fmoe/fmoe/runtime/backend"
)

// moeFixed queues the MoE block's ops that depend on xn alone: the router
// logits (into s.sc.router) and the shared expert (into s.sc.sd and, when
// gated, s.sc.sgate). It needs no decision on the host, so a decode step
// records it with the layer's mixer into one graph (graph.go); moe then
// does the rest.
func (s *Session) moeFixed(r *run, L *layer, xn backend.Buffer, T int) {
	s.moeRouter(r, L, xn, T)
	s.moeShared(r, L, xn, T)
}

// moeRouter queues the router's logits and the shared expert's gate logit:
// all of moeFixed that a device-routed layer whose shared expert runs in
// the routed batch needs (devroute.go).
func (s *Session) moeRouter(r *run, L *layer, xn backend.Buffer, T int) {
	m := s.m
	c := &m.Config
	be := m.be
	fused := T == 1 && L.routerSh != nil
	if fused {
		// The router's logits and the shared expert's gate in one launch
		// (fuse.go), the gate after the logits (sgate).
		r.do(be.MatMul(r.view(s.sc.router, 0, c.NumExperts+1), L.routerSh, xn, 1))
	} else {
		r.do(be.MatMul(r.view(s.sc.router, 0, T*c.NumExperts), L.router, xn, T))
	}
	if T == 1 && L.predict != nil {
		// A later layer's logits from this layer's input, read back with
		// this layer's own (prefetch.go).
		r.do(be.MatMul(r.view(s.sc.router, predictAt(c), c.NumExperts), L.predict, xn, 1))
	}
	if L.shGate != nil && L.shScale != nil && !fused {
		r.do(be.MatMul(r.view(s.sc.sgate, 0, T), L.shScale, xn, T))
	}
	s.lap(PhaseRouting)
}

// moeShared queues the shared expert into s.sc.sd.
func (s *Session) moeShared(r *run, L *layer, xn backend.Buffer, T int) {
	if L.shGate == nil {
		return
	}
	m := s.m
	c := &m.Config
	be := m.be
	Is := c.SharedExpertIntermediateSize
	sg := r.view(s.sc.sg, 0, T*Is)
	var su backend.Buffer
	if T == 1 && L.shGU != nil {
		// Gate and up in one launch (fuse.go), one after the other in
		// sg's scratch, which has the room for one token.
		r.do(be.MatMul(r.view(s.sc.sg, 0, 2*Is), L.shGU, xn, 1))
		su = r.view(s.sc.sg, Is, Is)
	} else {
		su = r.view(s.sc.su, 0, T*Is)
		r.do(be.MatMul(sg, L.shGate, xn, T))
		r.do(be.MatMul(su, L.shUp, xn, T))
	}
	r.do(be.SwiGLU(sg, sg, su))
	r.do(be.MatMul(r.view(s.sc.sd, 0, T*c.HiddenSize), L.shDown, sg, T))
	s.lap(PhaseSharedExpert)
}

// moe is the sparse MoE block on the normed input xn, after moeFixed; it
// adds the routed experts (weighted) and the shared expert (sigmoid-gated
// where it has a gate) to h. The tokens are grouped by expert so that each
// needed expert is read from disk once per step, whatever the batch size.
func (s *Session) moe(r *run, l int, L *layer, xn, h backend.Buffer, T int) error {
	m := s.m
	c := &m.Config
	be := m.be
	H, E, K := c.HiddenSize, c.NumExperts, m.K
	n := T * E
	if T == 1 && L.predict != nil {
		n = predictAt(c) + E
	}
	pl := &s.plan
	pl.reset(T, E, K)
	pl.host = growTo(pl.host, n)
	s.primeMiss(T)
	r.do(be.Read(pl.host, r.view(s.sc.router, 0, n)))
	if r.err != nil {
		return r.err
	}
	if n > T*E {
		s.predicted(l, pl.host[predictAt(c):n])
	}
	idx, wts := pl.idx, pl.wts
	if err := s.routeTokens(pl.host, l, T, idx, wts); err != nil {
		return err
	}
	if s.onRouteIn != nil {
		s.onRouteIn(l, xn, T)
	}
	if s.onRoute != nil {
		s.onRoute(l, idx, wts)
	}
	if s.RouteLog != nil {
		for t := 0; t < T; t++ {
			s.RouteLog.Record(l, s.pos+t, idx[t*K:(t+1)*K], wts[t*K:(t+1)*K])
		}
	}
	m.countPicks(l, idx)
	pl.group(K)
	s.lap(PhaseRouting)
	// One launch for the whole combine where the backend fuses it: the
	// token's rows are its expert slots in order, as routed leaves them on
	// a single device (a miss rank's rows are sent there, cpumiss.go).
	// With several devices the routed sum arrives as all-reduced
	// partials, not as rows, so the separate ops below add it.
	tc, fuse := be.(backend.TokenCombiner)
	fuse = fuse && m.oneDevice() && T == 1 && len(pl.w) <= 32 && !combineOff
	acc := r.view(s.sc.acc, 0, T*H)
	if err := s.routed(r, l, xn, acc, T, fuse); err != nil {
		return err
	}
	s.lap(PhaseCombine)
	if fuse {
		sd, gt := s.sharedOut(r, L)
		r.do(tc.CombineToken(h, r.view(s.sc.eo, 0, len(pl.w)*H), pl.w, sd, gt))
		s.lap(PhaseCombine)
		return r.err
	}
	// out = Σ_experts w·expert + sigmoid(g)·shared, then the residual add,
	// in transformers' order.
	if L.shGate != nil {
		sd := r.view(s.sc.sd, 0, T*H)
		if L.shScale == nil { // GLM-4.5's shared experts are added as they are
			r.do(be.Add(acc, sd))
		} else {
			r.do(be.GatedAdd(acc, sd, s.sgate(r, L, T), T))
		}
	}
	r.do(be.Add(h, acc))
	s.lap(PhaseCombine)
	return r.err
}

// sharedOut is a one-token step's shared expert output and its gate's
// logit for the one-launch combines (nil where the layer has none, or, the
// gate, where it adds the shared expert ungated).
func (s *Session) sharedOut(r *run, L *layer) (sd, gt backend.Buffer) {
	if L.shGate != nil {
		sd = r.view(s.sc.sd, 0, s.m.Config.HiddenSize)
		if L.shScale != nil {
			gt = s.sgate(r, L, 1)
		}
	}
	return sd, gt
}

// combineOff makes a one-token step combine with the separate ops even
// where the backend fuses them (tests compare the two).
var combineOff = false

// sgate is the shared expert's gate logits of a T-token step: after the
// router's logits where moeFixed computed the two in one launch.
func (s *Session) sgate(r *run, L *layer, T int) backend.Buffer {
	if T == 1 && L.routerSh != nil {
		return r.view(s.sc.router, s.m.Config.NumExperts, 1)
	}
	return r.view(s.sc.sgate, 0, T)
}
