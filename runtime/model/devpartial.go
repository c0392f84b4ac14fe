package model

import (
	"fmt"
	"math"
	"time"

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
// Off until a GPU run measures it against the host path
// (BenchmarkTieredDecode's "devmiss" lever).
var devMissOn = false

// devPartial reports whether layer l's MoE block of a T-token step routes
// on the device with the host computing its misses after.
func (s *Session) devPartial(l int, L *layer, T int) bool {
	if !devMissOn {
		return false
	}
	ie, ok := s.devEligible(l, L, T)
	return ok && !ie.LayerCached(l, s.m.Config.NumExperts)
}

// moePartialDevice is a partly held layer's device part: the top-K and
// the held experts, nothing read back, so a graph may hold it.
func (s *Session) moePartialDevice(r *run, l int, xn backend.Buffer) {
	m := s.m
	c := &m.Config
	H, I, E, K := c.HiddenSize, c.MoeIntermediateSize, c.NumExperts, m.K
	L := len(m.layers)
	dr := m.be.(backend.DeviceRouter)
	ie := m.be.(backend.IndexedExperts)
	status := r.view(s.sc.dev, 0, 1)
	ids := r.view(s.sc.dev, 1+l*K, K)
	w := r.view(s.sc.dev, 1+(L+l)*K, K)
	missed := r.view(s.sc.dev, 1+2*L*K, 1)
	if r.err != nil {
		return
	}
	// A NaN logit marks the step's status, which devEnd reads after the
	// logits; the misses mark a word of their own, not read.
	r.do(dr.RouteTopK(ids, w, status, r.view(s.sc.router, 0, E), 1, E, K, s.m.layers[l].dev.renorm))
	s.lap(PhaseRouting)
	if r.err == nil {
		r.do(ie.ExpertsIndexed(r.view(s.sc.eo, 0, K*H), r.view(s.sc.eg, 0, K*I), r.view(s.sc.eu, 0, K*I), xn, ids, missed, l, K))
	}
	s.lap(PhaseExpertCompute)
}

// moePartialHost is a partly held layer's host part, after its device
// part has been queued: it reads the ids, computes the misses into their
// rows and queues the combine.
func (s *Session) moePartialHost(r *run, l int, L *layer, xn, h backend.Buffer) error {
	m := s.m
	c := &m.Config
	H, E, K := c.HiddenSize, c.NumExperts, m.K
	pl := &s.plan
	pl.reset(1, E, K)
	got := s.dev.part[:0]
	for range K {
		got = append(got, 0)
	}
	s.dev.part = got
	if r.do(m.be.Read(got, r.view(s.sc.dev, 1+l*K, K))); r.err != nil {
		return r.err
	}
	for j, v := range got {
		if v < 0 || v >= float32(E) || v != float32(math.Trunc(float64(v))) {
			return fmt.Errorf("layer %d: the device router wrote expert id %v, outside [0, %d)", l, v, E)
		}
		pl.idx[j], pl.wts[j] = int(v), 0 // the weights stay on the device
	}
	m.countPicks(l, pl.idx)
	pl.group(K)
	pl.split(nil, 1)
	s.lap(PhaseRouting)
	ca := m.ranks[0].cache
	miss := s.miss[:0]
	for _, id := range pl.ids {
		ts, ok := ca.CachedExpert(l, id)
		if !ok {
			miss = append(miss, id)
			continue
		}
		for _, t := range ts {
			r.do(m.be.Release(t)) // held: only a probe of the index
		}
	}
	s.miss = miss
	hits := int64(len(pl.ids) - len(miss))
	m.stats.GPUHits += hits
	m.stats.DevLayers++
	if tp := s.tm.p; tp != nil {
		tp.GPUHits += hits
		tp.DevLayers++
	}
	bufs, err := s.rankBufs(xn, r.view(s.sc.acc, 0, H), 1)
	if err != nil {
		return err
	}
	tp := s.tm.p
	var inFn time.Duration
	err = m.experts.streamStay(l, miss, len(miss), tp, func(id int, w *[3]backend.Weight) error {
		t0 := time.Now()
		defer func() { inFn += time.Since(t0) }()
		bound, err := s.bindExpert(0, l, id, w)
		if err != nil {
			return fmt.Errorf("expert %d: %w", id, err)
		}
		s.countCopied(w)
		s.computeHeld(r, 0, id, bound, xn, bufs[0], 1)
		return r.err
	}, func() { s.releaseHeld(r) })
	s.endStream(len(pl.ids), inFn)
	if err != nil {
		return err
	}
	sd, gt := s.sharedOut(r, L)
	if r.err == nil {
		ie := m.be.(backend.IndexedExperts)
		r.do(ie.CombineTokenIndexed(h, r.view(s.sc.eo, 0, K*H), r.view(s.sc.dev, 1+(len(m.layers)+l)*K, K), K, sd, gt))
	}
	s.lap(PhaseCombine)
	return r.err
}
