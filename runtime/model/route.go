package model

import "fmt"

// RouteSource replaces the router's choice, for benchmarks that need a real
// model's expert usage on a model whose router cannot give it (a synthetic
// one): runtime/routetrace.Trace is one. Choose fills the K expert ids and
// weights of token position pos at layer l.
type RouteSource interface {
	Choose(l, pos int, idx []int, w []float32) error
}

// RouteSink receives the experts and weights every routed layer used, per
// token position, after the router (or the RouteSource) chose them:
// runtime/routetrace.Recorder is one. idx and w (len K) are re-used after
// the call returns. Recording changes nothing the session computes.
type RouteSink interface {
	Record(l, pos int, idx []int, w []float32)
}

// route is token t's choice at layer l: the family's router on its logits,
// or, with s.Routes, the source's (the router still runs, so the step costs
// what it costs without a source).
func (s *Session) route(logits []float32, l, t int, idx []int, w []float32) error {
	if err := s.m.layers[l].route(logits, idx, w); err != nil {
		return fmt.Errorf("token %d: %w", t, err)
	}
	if s.Routes == nil {
		return nil
	}
	if err := s.Routes.Choose(l, s.pos+t, idx, w); err != nil {
		return err
	}
	for _, e := range idx {
		if e < 0 || e >= s.m.Config.NumExperts {
			return fmt.Errorf("route source: position %d: expert %d outside [0, %d)", s.pos+t, e, s.m.Config.NumExperts)
		}
	}
	return nil
}
