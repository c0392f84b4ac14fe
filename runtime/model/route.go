package model

import (
	"fmt"
	"runtime"
	"sync"
)

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
	return checkPicks(idx, s.pos+t, s.m.Config.NumExperts)
}

// checkPicks refuses a route source's choice for position pos that names
// an expert outside [0, E).
func checkPicks(idx []int, pos, E int) error {
	for _, e := range idx {
		if e < 0 || e >= E {
			return fmt.Errorf("route source: position %d: expert %d outside [0, %d)", pos, e, E)
		}
	}
	return nil
}

// routeParMin is the fewest tokens routeTokens splits over goroutines: a
// 512-token prefill layer of 512 experts takes ~1.1 ms of one core (K=10,
// measured), while the device waits for its expert launches.
const routeParMin = 64

// routeTokens routes T tokens at layer l from their logits [T, E] into idx
// and w [T, K]: in parallel over the cores for a prompt whose router is
// the family's own (each token's choice is a pure function of its logits),
// in token order with a RouteSource (it may keep state). The error is the
// earliest token's, as in order.
func (s *Session) routeTokens(logits []float32, l, T int, idx []int, w []float32) error {
	E, K := s.m.Config.NumExperts, s.m.K
	one := func(t int) error {
		return s.route(logits[t*E:(t+1)*E], l, t, idx[t*K:(t+1)*K], w[t*K:(t+1)*K])
	}
	par := min(runtime.GOMAXPROCS(0), T/(routeParMin/2))
	if s.Routes != nil || T < routeParMin || par < 2 {
		for t := range T {
			if err := one(t); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, par)
	var wg sync.WaitGroup
	for p := range par {
		wg.Go(func() {
			for t := p * T / par; t < (p+1)*T/par; t++ {
				if errs[p] = one(t); errs[p] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
