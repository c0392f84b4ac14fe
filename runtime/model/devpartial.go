package model

import (
	"errors"
	"fmt"
	"slices"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Routing on the device for a layer whose experts the GPU tier holds only
// in part (docs/gpu-decode.md, E). The router's top-K and the experts the
// tier holds run on the device as for a wholly held layer (devroute.go),
// in the layer's graph; a miss's rows come out zero. The host then reads
// the K ids back (the one sync the layer has, in place of the host path's
// read of the router's logits), finds the misses in the tier's index,
// binds and computes them into their rows, and queues the combine with the
// device's weights. What the host path did besides (the top-K, the hits'
// job tables and launches) stays on the device.
//
// The sums are the device path's: the hits' rows as ExpertsIndexed makes
// them, the misses' as the host path computes a miss, the combine in
// ascending id with the device's weights.
//
// On by default since session 16's run (docs/benchmarks.md, issue 12 run
// 19): against the host path on the calibrated trace, 0.188–0.196 ms a
// K=4 layer against 0.212–0.226, 0.351–0.354 at K=10 against 0.403–0.416.
// A layer whose next picks the model predicts from its own router input
// (Options.Prefetch without a predicting route source: ownPredicts) takes
// the top-K of the predicted logits on the device too, read with its ids.
var devMissOn = true

// devPartial reports whether layer l's MoE block of a T-token step routes
// on the device with the host computing its misses after.
func (s *Session) devPartial(l int, L *layer, T int) bool {
	if !devMissOn {
		return false
	}
	ie, ok := s.devEligible(l, L, T)
	return ok && !ie.LayerCached(l, s.m.Config.NumExperts)
}

// ownPredicts reports whether layer L's router input predicts a later
// layer's picks that the step uses (prefetch.go): Options.Prefetch, and no
// route source that predicts them itself.
func (s *Session) ownPredicts(L *layer) bool {
	_, src := s.Routes.(RoutePredictor)
	return L.predict != nil && !src
}

// predArea is where a partly held layer that predicts (ownPredicts) reads
// back from, in the device-routing buffer after devTable's scratch: its K
// ids copied, the prediction's K ids, then their K weights (unread).
func (s *Session) predArea(r *run, n int) backend.Buffer {
	return r.view(s.sc.dev, devAt(s.m, devPred), n)
}

// moePartialRoute is a partly held layer's part in its graph: the top-K,
// nothing read back; with ownPredicts, the top-K of the predicted logits
// too, beside a copy of the layer's ids, so that one read takes both; with
// a miss rank (partShares), the normed input copied after them, for the
// same read (stageShare).
func (s *Session) moePartialRoute(r *run, l int, L *layer, xn backend.Buffer) {
	s.routeTopK(r, l, L)
	own, share := s.ownPredicts(L), s.m.partShares()
	if own && r.err == nil {
		s.predictRoute(r, L)
	}
	if (own || share) && r.err == nil {
		// The layer's ids at the read-back's start (predArea).
		ids, _ := s.devViews(r, l)
		r.do(s.m.be.Copy(r.view(s.predArea(r, s.m.K), 0, s.m.K), ids))
	}
	if share && r.err == nil {
		s.stageShare(r, xn)
	}
}

// predictRoute queues a predicting partly held layer's top-K of its
// predicted logits into predArea, after the layer's ids.
func (s *Session) predictRoute(r *run, L *layer) {
	m := s.m
	K, E := m.K, m.Config.NumExperts
	area := s.predArea(r, 3*K)
	// A NaN among the predicted logits marks the word the misses mark
	// (never read): a prediction is a guess, not the step's routing.
	sink := r.view(s.sc.dev, devAt(m, devMissed), 1)
	r.do(m.be.(backend.DeviceRouter).RouteTopK(r.view(area, K, K), r.view(area, 2*K, K), sink, r.view(s.sc.router, predictAt(&m.Config), E), 1, E, K, L.dev.renorm))
}

// moePartialHeld queues a partly held layer's held experts (with shared,
// the shared expert as row K), in a graph of their own (partHeldGraph).
// The misses mark a word of their own, never read: the host finds them in
// the tier.
func (s *Session) moePartialHeld(r *run, l int, xn backend.Buffer, shared bool) {
	fn := func(r *run) {
		s.expertsIndexed(r, l, xn, r.view(s.sc.dev, devAt(s.m, devMissed), 1), shared)
	}
	if g, _ := s.graphed(&s.m.layers[l], 1); !g || !s.replay(r, l+partHeldGraph*len(s.m.layers), fn) {
		fn(r)
	}
}

// partHeldGraph is the slot of a partly held layer's held experts among
// a layer's graphs (graph.go).
const partHeldGraph = 5

// moePartialHost is a partly held layer's host part, after its top-K has
// been queued: it queues the read of the ids and the held experts after
// it, so that the device computes them while the host waits for the ids
// (backend.AsyncReader; otherwise it reads after them), then computes the
// misses into their rows and queues the combine.
func (s *Session) moePartialHost(r *run, l int, L *layer, xn, h backend.Buffer, shared bool) error {
	m := s.m
	c := &m.Config
	H, E, K := c.HiddenSize, c.NumExperts, m.K
	pl := &s.plan
	pl.reset(1, E, K)
	ids, _ := s.devViews(r, l)
	own, share := s.ownPredicts(L), m.partShares()
	n := K
	switch {
	case share:
		ids, n = s.shareArea(r), 3*K+H
	case own:
		ids, n = s.predArea(r, 2*K), 2*K
	}
	got := growTo(s.dev.part, n)
	s.dev.part = got
	r.do(s.settleLanded(l))
	if share {
		s.primeMiss(1)
	}
	if ar, ok := m.be.(backend.AsyncReader); ok && !partSerial && r.err == nil {
		wait, err := ar.ReadAsync(got, ids)
		if r.do(err); r.err != nil {
			return r.err
		}
		s.moePartialHeld(r, l, xn, shared)
		r.do(s.waitPaced(wait))
	} else {
		s.moePartialHeld(r, l, xn, shared)
		r.do(m.be.Read(got, ids))
	}
	if r.err != nil {
		return r.err
	}
	if own {
		if err := s.predictedIDs(l, got[K:2*K]); err != nil {
			return err
		}
	}
	var xh []float32
	if share {
		xh = got[3*K:]
	}
	got = got[:K]
	for j, v := range got {
		id, err := devID(l, v, E)
		if err != nil {
			return err
		}
		pl.idx[j], pl.wts[j] = id, 0 // the weights stay on the device
	}
	m.countPicks(l, pl.idx)
	pl.group(K)
	pl.split(nil, 1)
	s.lap(PhaseRouting)
	bufs, err := s.rankBufs(xn, r.view(s.sc.acc, 0, H), 1)
	if err != nil {
		return err
	}
	ca := m.ranks[0].cache
	pf, _ := ca.(backend.ExpertPrefetcher)
	touch, _ := ca.(backend.ExpertToucher)
	miss, late, lateT := s.miss[:0], s.late[:0], s.lateT[:0]
	for _, id := range pl.ids {
		pending := pf != nil && pf.PrefetchPending(l, id) // before CachedExpert settles it
		if touch != nil && !pending && !touchOff {
			// Held (the device computed its row) or a miss: nothing to bind.
			if !touch.TouchExpert(l, id) {
				miss = append(miss, id)
			}
			continue
		}
		ts, ok := ca.CachedExpert(l, id)
		switch {
		case !ok:
			miss = append(miss, id)
		case pending:
			// A prefetch the device index did not hold when the
			// kernels ran (its row is zero): computed here, from the
			// tier, as the host path computes its hits (in one batch).
			late, lateT = append(late, id), append(lateT, ts)
		default:
			for _, t := range ts {
				r.do(m.be.Release(t)) // held: only a probe of the index
			}
		}
	}
	s.computeHits(r, 0, late, lateT, xn, bufs[0], 1)
	clear(lateT)
	s.miss, s.late, s.lateT = miss, late, lateT[:0]
	// A prefetch the step used was held (settled ahead, or by a step
	// before) or late: every pick but the misses.
	s.hitIDs = s.hitIDs[:0]
	for _, id := range pl.ids {
		if !slices.Contains(miss, id) {
			s.hitIDs = append(s.hitIDs, id)
		}
	}
	s.prefetchUsed(l, s.hitIDs)
	hits := int64(len(pl.ids) - len(miss))
	m.stats.GPUHits += hits
	m.stats.DevLayers++
	if tp := s.tm.p; tp != nil {
		tp.GPUHits += hits
		tp.DevLayers++
	}
	s.rx = append(s.rx[:0], xn)
	// The combine and the next layer's prefetches are queued before the
	// host waits for the last miss's copy: the device then has them when
	// the copy lands, and the link the prefetches behind it. Without a
	// miss the host waits for nothing: the prefetches then come after
	// the next layer's graph (prefetchLater).
	tail := func() {
		s.combineIndexed(r, l, L, h, shared)
		switch {
		case r.err != nil:
		case len(miss) == 0 && !partSerial:
			r.do(s.prefetchLater(l))
		default:
			r.do(s.prefetchNext(l))
		}
	}
	if share && len(miss) > 0 {
		link, ap, err := s.partApart(r, l, miss, xh, bufs)
		if err != nil {
			return err
		}
		if ap != nil {
			return s.partShared(r, l, L, h, shared, link, ap, bufs, len(pl.ids))
		}
	}
	inStream := tail
	if partSerial {
		inStream = nil
	}
	if err := s.streamMisses(r, l, miss, nil, nil, s.rx, bufs, 1, len(pl.ids), inStream); err != nil {
		return err
	}
	if partSerial {
		tail()
	}
	return r.err
}

// partShared is a partly held layer's misses with the miss rank computing
// its share apart (partApart): the link's misses streamed, the next
// layer's prefetches queued behind them so that the link works while the
// CPUs finish, then the share waited for, its rows sent where the combine
// reads them, and the combine queued.
func (s *Session) partShared(r *run, l int, L *layer, h backend.Buffer, shared bool, link []int, ap *apartShare, bufs []expertBufs, uses int) error {
	m := s.m
	err := s.streamMisses(r, l, link, nil, nil, s.rx, bufs, 1, uses, nil)
	// The link's rate is its misses' alone: the host path stamps it at its
	// wait, right after them; here the next layer's prefetches are queued
	// between, and their driver calls are no part of it. (Run 31 read the
	// link at 0.44-0.58 ms an expert here against the host path's 0.18;
	// earlier prefetches' copies ahead on the stream are likely most of
	// that, and they are the layer's real wait.)
	ap.stampLink()
	if err == nil && r.err == nil {
		r.do(s.prefetchNext(l))
	}
	if err == nil && r.err == nil {
		r.do(s.admitShare(l))
	}
	// Always waited for: its goroutine reads the pinned host tier.
	if err = errors.Join(err, ap.wait(m.ranks[m.miss].be, m.experts.tier)); err != nil {
		return err
	}
	s.observeShare(ap, len(link))
	s.sendRows(r, bufs)
	if r.err == nil {
		s.combineIndexed(r, l, L, h, shared)
	}
	return r.err
}

// settleLanded enters layer l's prefetches whose copies have ended into
// the tier's device index before the layer's held experts are queued
// (backend.PrefetchSettler), so that their graph computes them with the
// other held experts instead of the host after reading the ids (a late
// hit: bind, job tables and launches on the layer's path). At one layer
// ahead few have landed by then; at two, most.
func (s *Session) settleLanded(l int) error {
	st := &s.pf
	ps, ok := s.m.ranks[0].cache.(backend.PrefetchSettler)
	if !ok || settleOff || l >= len(st.marks) {
		return nil
	}
	for _, id := range st.marks[l] {
		if _, err := ps.SettleLanded(l, id); err != nil {
			return fmt.Errorf("settling layer %d expert %d's prefetch: %w", l, id, err)
		}
	}
	return nil
}

// settleOff leaves landed prefetches pending until their first use, as
// before session 18 (tests and the benchmark's -nosettle compare the two).
var settleOff = false

// touchOff probes a partly held layer's picks with CachedExpert and a
// Release of each tensor, as before session 18, where the tier has
// TouchExpert (tests compare the two).
var touchOff = false

// partSerial makes a partly held layer wait as it did before session 16:
// the ids read after the held experts, the combine and the prefetches
// queued after the last miss's copy (the benchmark's "serial" lever, the
// A/B of the overlap).
var partSerial = false

// predictedIDs takes the device's top-K of layer l's predicted logits as
// the model's own prediction for the layer PrefetchAhead ahead (what
// predicted takes from the logits on the host path: the same experts, in
// ascending id rather than by score).
func (s *Session) predictedIDs(l int, vs []float32) error {
	st := &s.pf
	E := s.m.Config.NumExperts
	st.own = growTo(st.own, len(vs))
	for j, v := range vs {
		id, err := devID(l, v, E)
		if err != nil {
			return fmt.Errorf("prediction: %w", err)
		}
		st.own[j] = id
	}
	st.ownL = l + s.m.prefetchAhead
	return nil
}
