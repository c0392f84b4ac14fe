package model

import "time"

// Observer receives every forward step of the model's sessions while it is
// set (Model.Observe): where the step's time went, layer by layer, what the
// expert reads cost and which experts each layer chose. It runs on the
// generating goroutine after the step, so it must return quickly, and it
// must not keep st or anything in it: they are reused by the next step.
type Observer func(st *StepStats)

// StepStats is one forward step as an Observer sees it.
type StepStats struct {
	Decode bool // a one-token step after the first position (see Timing)
	Pos    int  // position of the step's first token
	Tokens int  // tokens fed
	// K is the routed experts per token: each layer's Experts holds
	// Tokens·K ids.
	K    int
	Wall time.Duration // the whole step, start to logits
	// Embed and Head are the time outside the layers: the embedding
	// lookup, and the final norm, lm_head and logits read-back.
	Embed, Head time.Duration
	Layers      []LayerStats
}

// LayerStats is one decoder layer's share of a step.
type LayerStats struct {
	Full bool // full attention; otherwise GatedDeltaNet
	// Time is the layer's time per phase (PhaseEmbed and PhaseHead are
	// always zero).
	Time [NumPhases]time.Duration
	// The layer's expert reads: as in PhaseTiming.
	ExpertReads, ExpertBytes int64
	ProbedReads, CachedReads int64
	ProbedPages, CachedPages int64
	// The layer's expert uses and how the cache tiers served them: as in
	// PhaseTiming (GPUHits and HostHits stay 0 without the tiers, see
	// CacheBudgets; DeviceBytes on a backend without device memory).
	ExpertUses, GPUHits, HostHits, DeviceBytes int64
	// Experts are the routed experts of each token, token-major [Tokens·K].
	Experts []int
}

// Observe sets the observer of every session's steps; nil removes it.
// While one is set each step is timed (as with Session.Timing, whose cost
// it then has); without one a step pays a single atomic load.
func (m *Model) Observe(o Observer) {
	if o == nil {
		m.obs.Store(nil)
		return
	}
	m.obs.Store(&o)
}

// CacheBudgets are the byte budgets of the GPU and host tiers of experts
// (Options.GPUCache, Options.HostCache), 0 for a tier that is off.
func (m *Model) CacheBudgets() (gpu, host int64) { return m.cacheBudget, m.hostBudget }

// observation is a session's state for observing the current step.
type observation struct {
	fn Observer // nil: the step is not observed
	// own: Session.Timing was nil and points at timing for this step.
	own    bool
	timing Timing
	p      *PhaseTiming // the Timing half the step adds to
	prev   PhaseTiming  // *p at the last layer boundary
	start  time.Time
	st     StepStats
	// record is the onRoute hook for an observed step; it passes the
	// choice on to the hook it replaced (tests').
	record    func(l int, idx []int, w []float32)
	prevRoute func(l int, idx []int, w []float32)
}

// observeStart begins observing a step when an Observer is set, turning
// Timing on for the step if the caller had not.
func (s *Session) observeStart(T int, decode bool) {
	o := &s.ob
	o.fn = nil
	fp := s.m.obs.Load()
	if fp == nil {
		return
	}
	o.fn = *fp
	if s.Timing == nil {
		o.timing = Timing{}
		s.Timing, o.own = &o.timing, true
	}
	o.p = &s.Timing.Prefill
	if decode {
		o.p = &s.Timing.Decode
	}
	o.prev = *o.p
	o.start = time.Now()
	n := len(s.m.layers)
	if cap(o.st.Layers) < n {
		o.st.Layers = make([]LayerStats, n)
	}
	o.st.Layers = o.st.Layers[:n]
	for l := range o.st.Layers {
		L := &o.st.Layers[l]
		*L = LayerStats{Full: s.m.layers[l].full, Experts: L.Experts[:0]}
	}
	o.st.Decode, o.st.Pos, o.st.Tokens, o.st.K = decode, s.pos, T, s.m.K
	o.st.Wall, o.st.Embed, o.st.Head = 0, 0, 0
	if o.record == nil {
		o.record = func(l int, idx []int, w []float32) {
			if l >= 0 && l < len(o.st.Layers) {
				L := &o.st.Layers[l]
				L.Experts = append(L.Experts[:0], idx...)
			}
			if o.prevRoute != nil {
				o.prevRoute(l, idx, w)
			}
		}
	}
	o.prevRoute, s.onRoute = s.onRoute, o.record
}

// observeLayer charges what Timing gathered since the last boundary to
// layer l.
func (s *Session) observeLayer(l int) {
	o := &s.ob
	if o.fn == nil {
		return
	}
	cur := *o.p
	L := &o.st.Layers[l]
	for ph := range L.Time {
		L.Time[ph] = cur.Time[ph] - o.prev.Time[ph]
	}
	// The embedding lookup falls before layer 0's boundary.
	o.st.Embed += L.Time[PhaseEmbed]
	L.Time[PhaseEmbed] = 0
	L.ExpertReads = cur.ExpertReads - o.prev.ExpertReads
	L.ExpertBytes = cur.ExpertBytes - o.prev.ExpertBytes
	L.ProbedReads = cur.ProbedReads - o.prev.ProbedReads
	L.CachedReads = cur.CachedReads - o.prev.CachedReads
	L.ProbedPages = cur.ProbedPages - o.prev.ProbedPages
	L.CachedPages = cur.CachedPages - o.prev.CachedPages
	L.ExpertUses = cur.ExpertUses - o.prev.ExpertUses
	L.GPUHits = cur.GPUHits - o.prev.GPUHits
	L.HostHits = cur.HostHits - o.prev.HostHits
	L.DeviceBytes = cur.DeviceBytes - o.prev.DeviceBytes
	o.prev = cur
}

// observeDone hands a completed step to the observer.
func (s *Session) observeDone() {
	o := &s.ob
	if o.fn == nil {
		return
	}
	o.st.Head = o.p.Time[PhaseHead] - o.prev.Time[PhaseHead]
	o.st.Wall = time.Since(o.start)
	o.fn(&o.st)
}

// observeEnd restores what observeStart changed, whether or not the step
// completed.
func (s *Session) observeEnd() {
	o := &s.ob
	if o.fn == nil {
		return
	}
	s.onRoute, o.prevRoute = o.prevRoute, nil
	if o.own {
		s.Timing, o.own = nil, false
	}
	o.fn = nil
}
