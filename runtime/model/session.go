package model

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Session is one sequence: its position, the KV caches of the full-attention
// layers and the conv and recurrent states of the GatedDeltaNet layers.
type Session struct {
	m      *Model
	pos    int
	layers []layerState
	sc     scratch
	plan   moePlan // the MoE block's routing, re-used every layer

	// Capture, when set, receives the residual stream of every step as
	// [T, hidden] row-major: "embed", "layerNN" (after decoder layer NN)
	// and "final_norm". The slice is reused after the call returns.
	Capture func(name string, T int, h []float32)

	// Timing, when set, accumulates a per-phase breakdown of every step
	// (see Timing); nil turns it off.
	Timing *Timing
	tm     timer

	host  []float32 // captures read back to the host
	zeros []int     // row ids for broadcasting a bias (addBias)

	// Routes, when set, replaces the router's choice (benchmarks only: the
	// output is then meaningless as text).
	Routes RouteSource
	// RoutesAhead says that Routes' choices do not depend on the step's
	// state (a trace): then a one-token step whose layers route on the
	// device takes every layer's choice at its start and the device
	// computes with those in place of its own top-K (devroute.go), as it
	// would with the model's router; otherwise a Routes source keeps every
	// layer on the host path.
	RoutesAhead bool

	// RouteLog, when set, receives the routing actually used (what
	// fmoe-run --record-route writes).
	RouteLog RouteSink

	// onRoute, when set (tests), receives each layer's expert choices and
	// their weights [T, K] (slices re-used by the next layer: copy them).
	onRoute func(layer int, idx []int, w []float32)
	// onRouteIn, when set (benchmarks), sees each routed layer's normed
	// input, the router's x [T, hidden], before the host routes.
	onRouteIn func(layer int, xn backend.Buffer, T int)

	// bound holds the tensors of the expert bindExpert bound last; miss
	// the ids a layer reads (routed), re-used from layer to layer; run
	// the step's op runner.
	bound  [3]backend.Tensor
	miss   []int
	late   []int              // a partly held layer's prefetched hits the device did not see (devpartial.go)
	lateT  [][]backend.Tensor // their tensors, for one batch
	hitIDs []int              // a partly held layer's picks the tier held (devpartial.go)
	run    run

	// beforeHead, when set (benchmarks), runs after the last layer's ops
	// are queued and before the final norm's: a sync there times the head
	// alone with the layers' graphs on.
	beforeHead func()
	// beforeLayer, when set (benchmarks), runs as the host begins each
	// layer of a step (BenchmarkTieredDecode's device stamps a layer).
	beforeLayer func(l int)

	closed bool
	// ob is this step's observation while Model.Observe is set.
	ob observation

	mla mlaScratch    // DeepSeek-V3's latent attention (mla.go)
	dev devState      // layers routed on the device in this step (devroute.go)
	gr  sessionGraphs // recorded layers of decode steps (graph.go)
	rb  []expertBufs  // each rank's expert buffers (ranks.go); rank 0's are sc's
	// rx and racc hold each rank's view of xn and of its partial sum for the collective.
	rx, racc []backend.Buffer
	// mown is a layer's rank per expert with Options.MissBackend: the GPU tier's hits on rank 0, the misses on the miss rank.
	mown []int
	// missDue carries the miss rank's share of the repeat misses from one
	// expert to the next (cpumiss.go), so that the split keeps the share
	// over a run, whatever each layer's count.
	missDue float64
	// firsts is how many of the layer's misses were first misses (the
	// link's, for the GPU tier to admit): an automatic share measures
	// only layers without.
	firsts int
	// explored counts the partly held layers whose rounded automatic
	// share left one side empty (explore).
	explored int
	cpuMiss  []int             // a layer's misses for the miss rank (lookupHits)
	repeat   []int             // a layer's repeat misses, before the share is taken (lookupHits)
	guY, guX [2]backend.Buffer // an expert's gate and up outputs and their input, for one MatVecBatch (expertOps)
	mixed    []int             // a layer's misses, the link's and the miss rank's interleaved (lookupHits)
	onMiss   func(id int) bool // whether the miss rank computes id (its host-tier copy stays)
	held     heldBind          // a miss's tensors kept bound (computeHeld)
	grp      groupState        // groupExperts' room (grouped.go)
	pf       prefetchState
	row      []float32 // one hidden row on the host (sendRows)
	// pendAdd is a mixer's output whose add into the residual stream the
	// post-mixer norm does (addnorm.go); nil: none pending.
	pendAdd backend.Buffer

	// fwdTime is the wall time spent in forward calls (ForwardTime), fwdLast
	// the last call's (LastForwardTime).
	fwdTime, fwdLast time.Duration
	// into is ForwardContextInto's buffer during its call; gen is
	// Generate's, kept across its steps.
	into, gen []float32
	// greedy is ForwardGreedy's ArgMaxer during its call (nil otherwise),
	// picked what the last step's ArgMax read back.
	greedy backend.ArgMaxer
	picked [2]float32

	// broken is why the states are half-updated (a step failed or was
	// cancelled); Forward refuses to go on until Reset or Restore.
	broken error
}

type layerState struct {
	k, v   backend.Buffer // [capacity, kw] and [capacity, vw]
	kw, vw int            // values per position: kvHeads*headDim, or the layer's cacheW
	cap    int            // positions the cache holds
	conv   backend.Buffer // [kernel-1, convDim]
	s      backend.Buffer // [Hv, Dk, Dv]
}

// NewSession starts an empty sequence.
func (m *Model) NewSession() (*Session, error) {
	c := &m.Config
	s := &Session{m: m, layers: make([]layerState, len(m.layers))}
	for l := range m.layers {
		st := &s.layers[l]
		if L := &m.layers[l]; L.full {
			st.kw, st.vw = c.NumKeyValueHeads*c.HeadDim, c.NumKeyValueHeads*c.HeadDim
			if L.cacheW[0] > 0 {
				st.kw, st.vw = L.cacheW[0], L.cacheW[1]
			}
			continue // KV caches grow on first use
		}
		var err error
		if st.conv, err = m.be.Alloc((c.LinearConvKernelDim - 1) * c.ConvDim()); err != nil {
			return nil, err
		}
		if st.s, err = m.be.Alloc(c.LinearNumValueHeads * c.LinearKeyHeadDim * c.LinearValueHeadDim); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Close frees the session's device buffers (KV caches, recurrent states,
// activations) now rather than when the garbage collector finds the
// session unreachable, which on a GPU may be too late. The session is
// unusable afterwards.
func (s *Session) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	be := s.m.be
	var errs []error
	for l := range s.layers {
		st := &s.layers[l]
		for _, b := range []*backend.Buffer{&st.k, &st.v, &st.conv, &st.s} {
			if *b != nil {
				errs = append(errs, be.Free(*b))
				*b = nil
			}
		}
		st.cap = 0
	}
	errs = append(errs, s.gr.release(), s.sc.free(s.m), s.mla.close(be), s.freeRanks())
	return errors.Join(errs...)
}

// Pos is the number of tokens the session has consumed.
func (s *Session) Pos() int { return s.pos }

// Reset empties the session (keeping its buffers).
func (s *Session) Reset() error {
	for l := range s.layers {
		st := &s.layers[l]
		for _, b := range []backend.Buffer{st.conv, st.s} {
			if b != nil {
				if err := s.m.be.Zero(b); err != nil {
					return err
				}
			}
		}
	}
	s.pos, s.broken = 0, nil
	return nil
}

// ForwardTime is the wall time the session has spent in its forward
// calls: a decode rate without what the caller does between steps
// (sampling, detokenising, printing), measured without Timing's syncs.
func (s *Session) ForwardTime() time.Duration { return s.fwdTime }

// LastForwardTime is the wall time of the session's last forward call:
// a caller takes a median over steps from it, which a page fault or a
// collector pause in one step does not move as it moves the sum.
func (s *Session) LastForwardTime() time.Duration { return s.fwdLast }

// Forward feeds ids at the next positions and returns the logits of the
// last one ([vocab]).
func (s *Session) Forward(ids []int) ([]float32, error) {
	return s.forward(context.Background(), ids, false)
}

// ForwardContextInto is ForwardContext that writes the logits into dst
// when it has room for a vocabulary, and returns dst[:vocab]: a caller
// that decodes token by token keeps one buffer instead of a vocabulary's
// new floats each step (1 MB for Qwen3.5: ~0.2 ms to allocate and zero).
func (s *Session) ForwardContextInto(ctx context.Context, dst []float32, ids []int) ([]float32, error) {
	s.into = dst
	defer func() { s.into = nil }()
	return s.forward(ctx, ids, false)
}

// ForwardAll feeds ids and returns the logits at every position
// ([len(ids), vocab] row-major).
func (s *Session) ForwardAll(ids []int) ([]float32, error) {
	return s.forward(context.Background(), ids, true)
}

// ForwardContext is Forward that stops when ctx ends, checking between
// prefill chunks and between layers, so a long prefill stops within one
// layer. It then returns ctx.Err() and the session, part-way through the
// tokens, needs Reset or Restore before it can go on (Forward refuses
// until then): a layer's state cannot be rolled back on its own.
func (s *Session) ForwardContext(ctx context.Context, ids []int) ([]float32, error) {
	return s.forward(ctx, ids, false)
}

// ForwardAllContext is ForwardAll that stops when ctx ends, as
// ForwardContext does.
func (s *Session) ForwardAllContext(ctx context.Context, ids []int) ([]float32, error) {
	return s.forward(ctx, ids, true)
}

func (s *Session) forward(ctx context.Context, ids []int, all bool) ([]float32, error) {
	t0 := time.Now()
	defer func() { s.fwdLast = time.Since(t0); s.fwdTime += s.fwdLast }()
	m := s.m
	if len(ids) == 0 {
		return nil, fmt.Errorf("model: forward of no tokens")
	}
	if s.closed {
		return nil, errors.New("model: forward on a closed session")
	}
	if s.broken != nil {
		return nil, fmt.Errorf("model: the session needs Reset or Restore after: %w", s.broken)
	}
	V := m.Config.VocabSize
	for i, id := range ids {
		if id < 0 || id >= V {
			return nil, fmt.Errorf("model: token %d (index %d) outside the vocabulary [0, %d)", id, i, V)
		}
	}
	if s.pos+len(ids) > m.maxCtx {
		return nil, fmt.Errorf("model: %d tokens at position %d exceed the context of %d", len(ids), s.pos, m.maxCtx)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errClosed
	}
	var out []float32
	if all {
		out = make([]float32, 0, len(ids)*V)
	}
	decode := len(ids) == 1 && s.pos > 0
	for off := 0; off < len(ids); off += m.chunk {
		chunk := ids[off:min(off+m.chunk, len(ids))]
		last := off+m.chunk >= len(ids)
		lg, err := s.step(ctx, chunk, all, last, decode)
		if err != nil {
			s.broken = err
			return nil, err
		}
		if all {
			out = append(out, lg...)
		} else if last {
			out = lg
		}
	}
	return out, nil
}

// run collects the first error of a sequence of backend calls, so a step
// reads as the list of its ops.
type run struct {
	be  backend.Backend
	err error
}

func (r *run) do(err error) {
	if r.err == nil && err != nil {
		r.err = err
	}
}

func (r *run) view(b backend.Buffer, off, n int) backend.Buffer {
	return r.viewOn(r.be, b, off, n)
}

// step runs one chunk of tokens through the model. It returns the logits of
// every position (all) or of the last one (last), or nil.
func (s *Session) step(ctx context.Context, ids []int, all, last, decode bool) (lg []float32, err error) {
	m := s.m
	// No checksum outlives its step, whichever way it returns (integrity.go); a
	// mismatch is the step's error, ahead of any other.
	defer func() {
		if cerr := m.settleChecks(); cerr != nil {
			lg, err = nil, errors.Join(cerr, err)
		}
	}()
	// Nor any prefetch's copy (prefetch.go): the host tier's buffers it
	// reads are free once the step returns.
	defer func() {
		if perr := s.prefetchEnd(); perr != nil {
			lg, err = nil, errors.Join(err, perr)
		}
	}()
	c := &m.Config
	T, H := len(ids), c.HiddenSize
	eps := float32(c.RMSNormEps)
	s.observeStart(T, decode) // may switch Timing on for the step
	defer s.observeEnd()
	var t0 time.Time
	if s.Timing != nil {
		t0 = time.Now()
	}
	if err := s.sc.ensure(m, T); err != nil {
		return nil, err
	}
	s.startTiming(T, decode)
	defer s.stopTiming(t0)
	s.run = run{be: m.be}
	r := &s.run
	h := r.view(s.sc.h, 0, T*H)
	xn := r.view(s.sc.xn, 0, T*H)
	m.tierMode()
	s.clearResidual()
	r.do(m.be.Embed(h, m.embed, ids))
	s.devStart(r, T)
	s.lap(PhaseEmbed)
	s.capture(r, "embed", h, T)
	for l := range m.layers {
		// Before the layer, not after: its own ops are not interruptible,
		// and the first check also covers the time between chunks.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if s.beforeLayer != nil && r.err == nil {
			s.beforeLayer(l)
		}
		L, st := &m.layers[l], &s.layers[l]
		mixer := func(r *run) {
			s.clearResidual()
			if !s.foldsInputNorm(L, T) { // else deltaNet's in-projection norms h
				r.do(m.be.RMSNorm(xn, h, backend.Rows(T, H), L.inNorm, eps))
			}
			s.lap(PhaseNorm)
			if L.mix != nil {
				L.mix(s, r, L, st, xn, h, T)
				s.lap(PhaseAttention)
			} else if L.full {
				s.attention(r, L, st, xn, h, T)
				s.lap(PhaseAttention)
			} else {
				s.deltaNet(r, L, st, xn, h, T)
				s.lap(PhaseDeltaNet)
			}
		}
		postNorm := func(r *run) {
			s.normResidual(r, xn, h, backend.Rows(T, H), L.postNorm, eps)
			s.lap(PhaseNorm)
		}
		fixed := func(r *run) {
			postNorm(r)
			if L.fixed != nil {
				L.fixed(s, r, L, xn, h, T)
			}
		}
		// A device-routed layer's MoE block joins its fixed ops (and
		// their graph, which is then another: gk).
		dev, gk := s.devRouted(l, L, T), l
		part := !dev && s.devPartial(l, L, T)
		tail := fixed
		switch {
		case dev && s.devShared(l, L):
			// The shared expert goes with the routed experts (devroute.go).
			s.devMark(l)
			tail = func(r *run) { postNorm(r); s.moeRouter(r, L, xn, T); s.moeDevice(r, l, L, xn, h, true) }
			gk += len(m.layers)
		case dev:
			s.devMark(l)
			tail = func(r *run) { fixed(r); s.moeDevice(r, l, L, xn, h, false) }
			gk += len(m.layers)
		case part && s.devShared(l, L):
			// The graph ends at the top-K; the held experts, with the
			// shared one, and the misses come after it (devpartial.go).
			tail = func(r *run) { postNorm(r); s.moeRouter(r, L, xn, T); s.moePartialRoute(r, l, L, xn) }
			gk += 2 * len(m.layers)
		case part:
			tail = func(r *run) { fixed(r); s.moePartialRoute(r, l, L, xn) }
			gk += 2 * len(m.layers)
		}
		if (dev || part) && s.dev.table {
			gk += 2 * len(m.layers) // the top-K writes elsewhere (devTable)
		}
		if part && s.ownPredicts(L) {
			gk += 4 * len(m.layers) // and the prediction's top-K (moePartialRoute)
		}
		switch graph, whole := s.graphed(L, T); {
		case graph && whole && s.replay(r, gk, func(r *run) { mixer(r); tail(r) }):
		case graph && !whole:
			mixer(r)
			if r.err == nil && !s.replay(r, gk, tail) {
				tail(r)
			}
		default:
			mixer(r)
			tail(r)
		}
		if r.err == nil {
			// The layer before's prefetches, put off until this layer's
			// graph was queued (prefetchLater).
			r.do(s.prefetchDeferred())
		}
		switch {
		case r.err != nil || dev:
		case part:
			r.do(s.moePartialHost(r, l, L, xn, h, s.devShared(l, L)))
			m.demoteEvicted()
		case L.ffn != nil:
			r.do(L.ffn(s, r, l, L, xn, h, T))
			m.demoteEvicted()
		}
		if r.err == nil && T == 1 && !part {
			r.do(s.prefetchNext(l)) // a partly held layer's came before its last miss's wait
		}
		if r.err != nil {
			return nil, inLayer(l, r.err)
		}
		s.capture(r, fmt.Sprintf("layer%02d", l), h, T)
		s.observeLayer(l)
	}
	if r.err == nil {
		r.do(s.prefetchDeferred()) // the last layer's: it lets go of what is spent
	}
	if s.beforeHead != nil && r.err == nil {
		s.beforeHead()
	}
	r.do(m.be.RMSNorm(xn, h, backend.Rows(T, H), m.norm, eps))
	s.lap(PhaseHead)
	s.capture(r, "final_norm", xn, T)
	var logits []float32
	V := c.VocabSize
	// ForwardGreedy's step picks its token where the logits are.
	pick := last && !all && s.greedy != nil
	switch {
	case all:
		lb, err := m.be.Alloc(T * V)
		r.do(err)
		if r.err == nil {
			r.do(m.be.MatMul(lb, m.head, xn, T))
			logits = make([]float32, T*V)
			r.do(m.be.Read(logits, lb))
			r.do(m.be.Free(lb))
		}
	case last:
		lb := r.view(s.sc.logits, 0, V)
		r.do(m.be.MatMul(lb, m.head, r.view(xn, (T-1)*H, H), 1))
		if pick {
			r.do(s.greedy.ArgMax(s.sc.pick, lb))
			r.do(m.be.Read(s.picked[:], s.sc.pick))
			break
		}
		if logits = s.into; cap(logits) >= V {
			logits = logits[:V]
		} else {
			logits = make([]float32, V)
		}
		r.do(m.be.Read(logits, lb))
	}
	s.devEnd(r)
	// The logits check is part of the head's time (once per token, not
	// per layer).
	var bad error
	switch {
	case r.err != nil:
	case pick:
		bad = m.checkPicked(s.picked)
	default:
		bad = m.checkLogits(logits)
	}
	s.lap(PhaseHead)
	// Every checksum of the step's reads before its logits leave it; the
	// wait is the experts'.
	if err := m.settleChecks(); err != nil {
		return nil, err
	}
	s.lap(PhaseExpertWait)
	if r.err != nil {
		return nil, fmt.Errorf("model: %w", r.err)
	}
	if bad != nil {
		return nil, bad
	}
	s.observeDone()
	s.pos += T
	return logits, nil
}

func (s *Session) capture(r *run, name string, b backend.Buffer, T int) {
	if s.Capture == nil || r.err != nil {
		return
	}
	// A hidden state leaves the step only after the checks of the
	// experts that made it.
	if r.do(s.m.settleChecks()); r.err != nil {
		return
	}
	n := b.Len()
	if cap(s.host) < n {
		s.host = make([]float32, n)
	}
	h := s.host[:n]
	r.do(s.m.be.Read(h, b))
	if r.err == nil {
		s.Capture(name, T, h)
	}
	if s.tm.p != nil {
		// Captures are instrumentation, not forward work: they count in
		// the step's wall time but in no phase.
		s.tm.last = time.Now()
	}
}
