package model

import (
	"errors"
	"fmt"
	"slices"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/runtime/backend"
)

// Prefetch of predicted misses (Options.Prefetch; docs/gpu-decode.md). A
// one-token step's layer waits for the copies of its GPU-tier misses, and
// they can start only once its router has spoken, so they overlap little
// of the layer. With a prediction of the next layer's picks, the copies of
// those the GPU tier lacks and the host tier holds go on the copy stream
// behind this layer's own misses (backend.ExpertPrefetcher), while this
// layer's experts and the next layer's mixer compute; the next layer then
// finds them in the GPU tier. A wrong prediction costs link time and a
// place in the GPU tier, never a result: the entry holds the very bytes a
// miss would have copied.

// RoutePredictor is implemented by route sources that can say, layers
// ahead, which experts layer l will pick at token position pos (a trace
// knows; a benchmark's source blurs that to a measured accuracy). dst's
// room is re-used; the ids need not be distinct or sorted.
type RoutePredictor interface {
	Predict(l, pos int, dst []int) []int
}

// prefetchState is a session's prefetches: copies whose host bytes are
// still read, and the experts prefetched for each layer not yet run (to
// count those it uses).
type prefetchState struct {
	flight []pfFlight
	marks  [][]int // by layer: expert ids prefetched for it
	ids    []int
	// own is the model's own prediction (layer.predict) for layer ownL,
	// made at the routing of the layer before it by PrefetchAhead.
	own  []int
	ownL int
	// due is 1 + the layer whose prefetchNext is put off until the next
	// layer's graph is queued (prefetchLater); 0: none.
	due int
	// wants are the predictions Options.PrefetchPace has not issued yet,
	// oldest first (pace.go).
	wants []pfWant
}

type pfFlight struct {
	te  *hentry // the host-tier entry the copy reads, pinned
	tok int
}

// prefetcher is the GPU tier's prefetch when Options.Prefetch is on and a
// one-token step can use it.
func (s *Session) prefetcher(T int) (backend.ExpertPrefetcher, bool) {
	if !s.m.prefetch || T != 1 {
		return nil, false
	}
	pf, why := s.m.tierPrefetcher()
	return pf, why == ""
}

// PrefetchCheck says why Options.Prefetch cannot run on this model as
// opened (nil when it can, or when it is off).
func (m *Model) PrefetchCheck() error {
	if !m.prefetch {
		return nil
	}
	if _, why := m.tierPrefetcher(); why != "" {
		return fmt.Errorf("model: prefetch: %s", why)
	}
	return nil
}

// tierPrefetcher is the GPU tier's prefetch, or why there is none to use:
// it needs a GPU tier that prefetches (CUDA), a host tier to copy from,
// and one device.
func (m *Model) tierPrefetcher() (backend.ExpertPrefetcher, string) {
	c := m.ranks[0].cache
	switch {
	case c == nil:
		return nil, "it needs a GPU tier (--gpu-cache; CUDA)"
	case m.experts.tier == nil:
		return nil, "it copies from the host tier: give one (--host-cache)"
	case m.experts.lz4 != nil:
		return nil, "the LZ4 copy has no host tier"
	case !m.oneDevice():
		// A miss rank may stand beside it: its share comes from the
		// host tier the prefetches copy from, both only reading it.
		return nil, "it runs on one device"
	}
	if pf, ok := c.(backend.ExpertPrefetcher); ok {
		return pf, ""
	}
	return nil, fmt.Sprintf("backend %s's GPU tier does not prefetch", m.be.Name())
}

// The model's own prediction: the router of the layer PrefetchAhead
// ahead runs on a layer's router input beside the layer's own router
// (moeFixed), its logits after the layer's and the shared expert gate's,
// so that the layer's one read-back takes both (no sync of its own). On
// the built-in model it names 76.6% of the next layer's picks and 67.0% of
// the one after (BenchmarkRouterPrediction); a layer routed on the device
// reads no logits and predicts nothing.

// predictAt is the scratch offset of the predicted logits.
func predictAt(c *format.Config) int { return c.NumExperts + 1 }

// setupPredict gives each routed layer the router of the layer
// PrefetchAhead ahead, where that one routes over as many experts.
func (m *Model) setupPredict() {
	if !m.prefetch {
		return
	}
	for l := range m.layers {
		if t := l + m.prefetchAhead; t < len(m.layers) && m.layers[l].router != nil && m.layers[t].router != nil {
			m.layers[l].predict = m.layers[t].router
		}
	}
}

// predicted takes layer l's predicted logits for the layer PrefetchAhead
// ahead: its top K.
func (s *Session) predicted(l int, logits []float32) {
	st := &s.pf
	st.own = growTo(st.own, s.m.K)
	backend.TopK(logits, st.own)
	st.ownL = l + s.m.prefetchAhead
}

// prediction is the experts layer t is expected to pick: the route
// source's where it predicts, else the model's own when made for t.
func (s *Session) prediction(t int) []int {
	st := &s.pf
	if pr, ok := s.Routes.(RoutePredictor); ok {
		st.ids = pr.Predict(t, s.pos, st.ids[:0])
		return st.ids
	}
	if st.ownL == t && len(st.own) > 0 {
		st.ownL = -1 // once
		return st.own
	}
	return nil
}

// prefetchNext prefetches the predicted experts of layer l+d (d:
// Options.PrefetchAhead) after layer l's ops (and its misses' copies) are
// queued, and lets go of the host bytes of earlier prefetches whose copies
// have ended.
func (s *Session) prefetchNext(l int) error {
	pf, ok := s.prefetcher(1)
	if !ok {
		return nil
	}
	if err := s.prefetchPoll(pf, false); err != nil {
		return err
	}
	m := s.m
	st := &s.pf
	st.marks = growTo(st.marks, len(m.layers))
	st.marks[l] = st.marks[l][:0] // layer l has run: what it did not use is spent
	t := l + m.prefetchAhead
	if t >= len(m.layers) {
		return nil
	}
	if lp, ok := s.linkPacer(); ok {
		return s.pace(lp, pf, t, s.prediction(t))
	}
	for _, id := range s.prediction(t) {
		if err := s.prefetchOne(pf, t, id); err != nil {
			return err
		}
	}
	return nil
}

// prefetchOne copies layer t's expert id from the host tier into the GPU
// tier, unless it is out of range, already prefetched for t, or not in
// the host tier (no read on the step's path).
func (s *Session) prefetchOne(pf backend.ExpertPrefetcher, t, id int) error {
	m, st := s.m, &s.pf
	st.marks = growTo(st.marks, len(m.layers))
	if id < 0 || id >= m.Config.NumExperts || slices.Contains(st.marks[t], id) {
		return nil
	}
	te, w, ok := m.experts.hostWeights(t, id)
	if !ok {
		return nil
	}
	tier := m.experts.tier
	tok, ok, err := pf.PrefetchExpert(t, id, w[:])
	if err != nil || !ok {
		tier.put(te, false)
		if err != nil {
			return fmt.Errorf("prefetch of layer %d expert %d: %w", t, id, err)
		}
		return nil
	}
	if tier.exclusive {
		tier.drop(te) // the GPU tier has it now; the slot frees at the put
	}
	st.flight = append(st.flight, pfFlight{te, tok})
	st.marks[t] = append(st.marks[t], id)
	m.stats.Prefetched++
	if tp := s.tm.p; tp != nil {
		tp.Prefetched++
	}
	s.countCopied(&w)
	return nil
}

// prefetchLater puts off layer l's prefetchNext (a partly held layer
// whose picks were all held: the host waits for no copy of its own) until
// the next layer's graph is queued (prefetchDeferred, right after it), so
// that the graph reaches the device without waiting for the prefetches'
// driver calls (~15 µs each: an admission, its eviction, a copy and
// events). The copies go on the link one graph launch later (~5–7 µs),
// still ahead of the next layer's read of its ids, its held experts and
// its misses. prefetchNow keeps them in the layer's tail.
func (s *Session) prefetchLater(l int) error {
	if prefetchNow {
		return s.prefetchNext(l)
	}
	err := s.prefetchDeferred() // none is lost to a later one
	s.pf.due = l + 1
	return err
}

// prefetchNow issues a layer's prefetches in its tail whether or not it
// waited for a copy (the order before session 18; tests compare the two).
var prefetchNow = false

// prefetchDeferred runs the prefetchNext that prefetchLater put off.
func (s *Session) prefetchDeferred() error {
	l := s.pf.due - 1
	if l < 0 {
		return nil
	}
	s.pf.due = 0
	return s.prefetchNext(l)
}

// prefetchUsed counts layer l's GPU-tier hits that a prefetch brought in.
func (s *Session) prefetchUsed(l int, hits []int) {
	st := &s.pf
	st.dropWants(l)
	if l >= len(st.marks) || len(st.marks[l]) == 0 {
		return
	}
	for _, id := range hits {
		if slices.Contains(st.marks[l], id) {
			s.m.stats.PrefetchUsed++
			if tp := s.tm.p; tp != nil {
				tp.PrefetchUsed++
			}
		}
	}
	st.marks[l] = st.marks[l][:0]
}

// prefetchPoll lets go of the host bytes of prefetches whose copies have
// ended (all of them, waiting, with wait: at the end of a step, so that
// no copy outlives the step that queued it).
func (s *Session) prefetchPoll(pf backend.ExpertPrefetcher, wait bool) error {
	st := &s.pf
	var errs []error
	keep := st.flight[:0]
	for _, f := range st.flight {
		done, err := pf.PrefetchDone(f.tok, wait)
		switch {
		case err != nil:
			// The copy's end is unknown: its host-tier entry stays pinned
			// (a slot lost to the tier rather than bytes changed under a
			// copy), and the step fails with err.
			errs = append(errs, err)
		case done:
			s.m.experts.tier.put(f.te, false)
		default:
			keep = append(keep, f)
		}
	}
	st.flight = keep
	return errors.Join(errs...)
}

// prefetchEnd waits for the step's prefetches.
func (s *Session) prefetchEnd() error {
	s.pf.due = 0 // a step that failed before its next layer ran
	s.pf.wants = s.pf.wants[:0]
	if len(s.pf.flight) == 0 {
		return nil
	}
	pf, ok := s.m.ranks[0].cache.(backend.ExpertPrefetcher)
	if !ok {
		return errors.New("model: prefetches in flight without a prefetching GPU tier")
	}
	return s.prefetchPoll(pf, true)
}
