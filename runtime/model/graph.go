package model

import (
	"errors"

	"github.com/fmoe/fmoe/runtime/backend"
)

// A decode step's layer is mostly ops that need no decision on the host:
// the norms, the GatedDeltaNet mixer, the router logits and the shared
// expert. Only the routed experts wait for the router's logits to be read
// back. On a backend that records graphs (backend.GraphRecorder: CUDA)
// those fixed ops are recorded once per layer and replayed, one host call
// instead of about twenty launches per layer. A replay runs the recorded
// kernels on the same buffers, so it computes what the ops would, bit for
// bit (TestGraphDecodeIdentical).
//
// What a layer's graph holds depends on its mixer: a GatedDeltaNet layer
// records from its input norm to its fixed MLP part; an attention layer's
// kernels take the position (rope, the KV cache's length), so it records
// only from its post-attention norm on.

// graphsOff turns graphs off (a variable so that tests and benchmarks can
// compare the two paths).
var graphsOff = false

// sessionGraphs are a session's recorded layers.
type sessionGraphs struct {
	g     []backend.Graph // per layer; nil: not recorded
	gen   []int           // the scratch generation each was recorded with
	fails []int           // failed recordings per layer
	off   bool            // the backend records no graphs: run ops one by one
}

// maxGraphFails is how many failed recordings of a layer make it run its
// ops one by one for good. A first recording can fail for a reason the
// direct run removes: a norm weight decoded to float32 on its first use
// allocates, which a recording refuses.
const maxGraphFails = 3

// graphed reports whether layer L's fixed ops of a T-token step go through
// a graph, and which of them: all from the input norm (whole) or from the
// post-attention norm on.
func (s *Session) graphed(L *layer, T int) (ok, whole bool) {
	if graphsOff || s.gr.off || T != 1 || s.Timing != nil || L.fixed == nil {
		return false, false
	}
	if _, ok := s.m.be.(backend.GraphRecorder); !ok {
		return false, false
	}
	return true, !L.full && L.mix == nil
}

// replay runs graph l (layer l's, or l-layers's device-routed one), recording it first when it has none or
// when it is stale; fn queues the ops it holds. It returns false when fn
// is to be run directly instead (the backend could not record).
func (s *Session) replay(r *run, l int, fn func(r *run)) bool {
	gs := &s.gr
	if gs.g == nil {
		// A layer has up to eight graphs: its fixed ops, those with its
		// MoE block routed on the device (l + layers), those with a
		// partly held layer's top-K (l + 2·layers, devpartial.go), the
		// last two with the picks uploaded (l + 3·layers, l + 4·layers:
		// devTable), a partly held layer's held experts (l + 5·layers,
		// partHeldGraph), and its top-K with the prediction's (l +
		// 6·layers, with the picks uploaded l + 8·layers: ownPredicts).
		n := 9 * len(s.m.layers)
		gs.g, gs.gen, gs.fails = make([]backend.Graph, n), make([]int, n), make([]int, n)
	}
	if gs.fails[l] >= maxGraphFails {
		return false
	}
	if g := gs.g[l]; g != nil {
		if gs.gen[l] == s.sc.gen {
			err := g.Replay()
			if !errors.Is(err, backend.ErrGraphStale) {
				r.do(err)
				return true
			}
		}
		r.do(g.Release())
		gs.g[l] = nil
	}
	gr := s.m.be.(backend.GraphRecorder)
	if err := gr.BeginGraph(); err != nil {
		gs.off = true
		return false
	}
	rec := &run{be: r.be}
	fn(rec)
	g, err := gr.EndGraph()
	if rec.err != nil || err != nil {
		// Nothing ran: run the ops directly (an op that refused then
		// gives its error, or does what it could not while recording).
		if g != nil {
			g.Release()
		}
		gs.fails[l]++
		return false
	}
	gs.g[l], gs.gen[l] = g, s.sc.gen
	r.do(g.Replay())
	return true
}

// release frees the session's graphs.
func (gs *sessionGraphs) release() error {
	var errs []error
	for i, g := range gs.g {
		if g != nil {
			errs = append(errs, g.Release())
			gs.g[i] = nil
		}
	}
	return errors.Join(errs...)
}
