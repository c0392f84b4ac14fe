package model

import (
	"fmt"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
)

// routed computes acc = Σ w·expert over the layer's grouped plan. Each rank
// (ranks.go) computes the experts the placement gives it: rank 0's normed
// input is broadcast to the others, every rank sums its own experts' rows
// into its partial acc (ascending expert, then token, as transformers'
// index_add_ loop does), and the collective adds the partials. On one rank
// that is the whole sum in that order; on several, the partials change
// only the order of the additions. The misses of all ranks are read in one
// stream and computed on their rank as they arrive.
//
// With fuse (one device, with or without a miss rank) routed stops once
// the experts' rows are queued on rank 0, leaving acc alone: the caller
// combines the rows itself (backend.TokenCombiner).
func (s *Session) routed(r *run, l int, xn, acc backend.Buffer, T int, fuse bool) error {
	m := s.m
	if m.miss > 0 {
		return s.routedMiss(r, l, xn, acc, T, fuse)
	}
	pl := &s.plan
	H := m.Config.HiddenSize
	bufs, err := s.rankBufs(xn, acc, T)
	if err != nil {
		return err
	}
	pl.split(m.owner(l), len(bufs))
	s.rx, s.racc = growTo(s.rx, len(bufs)), growTo(s.racc, len(bufs))
	xs, accs := s.rx, s.racc
	for d := range bufs {
		xs[d] = r.viewOn(m.ranks[d].be, bufs[d].xn, 0, T*H)
		accs[d] = r.viewOn(m.ranks[d].be, bufs[d].acc, 0, T*H)
	}
	if r.err == nil {
		r.do(m.coll.Broadcast(xs, 0))
	}
	s.lap(PhaseExchange)
	if m.experts.pendingIn(l) {
		// A layer run twice in one step (no family does) would look up a
		// tier that may hold an expert still being checked.
		if err := m.settleChecks(); err != nil {
			return err
		}
	}
	// Hits of the GPU tiers first: their kernels run while the misses are read.
	miss := s.miss[:0]
	for d, pt := range pl.part[:len(bufs)] {
		miss = append(miss, s.cachedOn(r, d, l, pt.ids, xs[d], bufs[d], T)...)
		if r.err != nil {
			return r.err
		}
	}
	s.miss = miss // its room, for the next layer
	if err := s.streamMisses(r, l, miss, nil, m.owner(l), xs, bufs, T, len(pl.ids), nil); err != nil {
		return err
	}
	if fuse && len(bufs) == 1 {
		return r.err
	}
	s.sumParts(r, bufs, accs)
	return r.err
}

// streamMisses reads a layer's misses (those with stay(id) stay in the
// host tier: streamStay), binds each on its rank (own[id]; nil: rank
// 0) and queues its matmuls there, releasing each after the next one's
// binds (computeHeld), then counts the layer's uses (endStream). tail
// (nil: none), what the caller queues after the misses, runs once their
// last matmuls are queued and before the host waits for that miss's copy
// (releasing its binds), so that the device has it queued meanwhile.
func (s *Session) streamMisses(r *run, l int, ids []int, stay func(id int) bool, own []int, xs []backend.Buffer, bufs []expertBufs, T, uses int, tail func()) error {
	m := s.m
	tp := s.tm.p
	var inFn time.Duration
	err := m.experts.streamStay(l, ids, stay, tp, func(id int, w *[3]backend.Weight) error {
		if tp != nil {
			t0 := time.Now()
			defer func() { inFn += time.Since(t0) }()
		}
		d := 0
		if own != nil {
			d = own[id]
		}
		bound, err := s.bindExpert(d, l, id, w)
		if err != nil {
			return fmt.Errorf("expert %d: %w", id, err)
		}
		if m.ranks[d].device {
			s.countCopied(w)
		}
		s.computeHeld(r, d, id, bound, xs[d], bufs[d], T)
		return r.err
	}, func() {
		if tail != nil && r.err == nil {
			tail()
			tail = nil
		}
		s.releaseHeld(r)
	})
	s.endStream(uses, inFn)
	if tail != nil && err == nil && r.err == nil {
		tail()
	}
	return err
}

// endStream counts a layer's uses experts and, when timed, splits the time
// since the last lap into the experts' compute (inFn, spent in the stream's
// callback) and the wait for their reads.
func (s *Session) endStream(uses int, inFn time.Duration) {
	s.m.stats.Uses += int64(uses)
	tp := s.tm.p
	if tp == nil {
		return
	}
	tp.ExpertUses += int64(uses)
	tp.MoELayers++
	now := time.Now()
	tp.Time[PhaseExpertCompute] += inFn
	tp.Time[PhaseExpertWait] += now.Sub(s.tm.last) - inFn
	s.tm.last = now
	s.lap(PhaseExpertCompute) // compute still queued on an asynchronous backend
}

// sumParts adds each rank's expert rows into its partial sum (its part of
// the plan, in order) and, over several ranks, all-reduces the partials.
func (s *Session) sumParts(r *run, bufs []expertBufs, accs []backend.Buffer) {
	m, pl := s.m, &s.plan
	H := m.Config.HiddenSize
	for d, pt := range pl.part[:len(bufs)] {
		be := m.ranks[d].be
		r.do(be.Zero(accs[d]))
		if len(pt.rows) > 0 {
			r.do(be.ScatterAdd(accs[d], r.viewOn(be, bufs[d].eo, 0, len(pt.rows)*H), pt.rows, pt.w, H))
		}
	}
	s.lap(PhaseCombine)
	if len(bufs) > 1 && r.err == nil {
		r.do(m.coll.AllReduce(accs))
	}
	s.lap(PhaseExchange)
}

// viewOn is view on another rank's backend.
func (r *run) viewOn(be backend.Backend, b backend.Buffer, off, n int) backend.Buffer {
	v, err := be.View(b, off, n)
	r.do(err)
	return v
}

// cachedOn computes rank d's experts ids that its GPU tier holds and
// returns the others, which are to be read.
func (s *Session) cachedOn(r *run, d, l int, ids []int, xn backend.Buffer, b expertBufs, T int) []int {
	m := s.m
	c := m.ranks[d].cache
	if c == nil {
		return ids
	}
	var miss, hits []int
	var hitT [][]backend.Tensor
	for _, id := range ids {
		if bound, ok := c.CachedExpert(l, id); ok {
			hits, hitT = append(hits, id), append(hitT, bound)
			continue
		}
		miss = append(miss, id)
	}
	m.stats.GPUHits += int64(len(hits))
	if tp := s.tm.p; tp != nil {
		tp.GPUHits += int64(len(hits))
	}
	s.prefetchUsed(l, hits)
	s.computeHits(r, d, hits, hitT, xn, b, T)
	return miss
}

// computeHits queues rank d's GPU-tier hits, bound as hitT: batched where
// the backend batches matvecs (a one-token step), else one by one.
func (s *Session) computeHits(r *run, d int, hits []int, hitT [][]backend.Tensor, xn backend.Buffer, b expertBufs, T int) {
	if bt, ok := s.m.ranks[d].be.(backend.MatVecBatcher); ok && batchHits && T == 1 && len(hits) > 1 {
		s.batchExperts(r, d, bt, hits, hitT, xn, b)
		return
	}
	if mb, ok := s.batcher(d, T); ok && len(hits) > 0 {
		s.groupExperts(r, d, mb, hits, hitT, xn, b)
		return
	}
	for i, id := range hits {
		s.computeExpert(r, d, id, hitT[i], xn, b, T)
	}
}

// computeExpert queues expert id's matmuls on rank d, bound as bound,
// writing its weighted rows at its slot of the rank's output rows, then
// releases the tensors.
func (s *Session) computeExpert(r *run, d, id int, bound []backend.Tensor, xn backend.Buffer, b expertBufs, T int) {
	s.expertOps(r, d, id, bound, xn, b, T)
	be := s.m.ranks[d].be
	for _, t := range bound {
		if t != nil {
			r.do(be.Release(t))
		}
	}
}

// computeHeld is computeExpert for a miss in a stream with late release
// (streamStay): it queues expert id's matmuls, then releases the miss
// before it, and keeps id's tensors bound until the next miss (or the
// stream's end, releaseHeld). A device whose Release waits for a copy from
// pinned memory then has the next copy queued while it waits.
func (s *Session) computeHeld(r *run, d, id int, bound []backend.Tensor, xn backend.Buffer, b expertBufs, T int) {
	s.expertOps(r, d, id, bound, xn, b, T)
	s.releaseHeld(r)
	h := &s.held
	h.be, h.n = s.m.ranks[d].be, copy(h.ts[:], bound)
}

// releaseHeld releases the tensors computeHeld kept.
func (s *Session) releaseHeld(r *run) {
	h := &s.held
	for i, t := range h.ts[:h.n] {
		if t != nil {
			r.do(h.be.Release(t))
		}
		h.ts[i] = nil
	}
	h.n = 0
}

// heldBind is a miss's tensors that computeHeld keeps bound.
type heldBind struct {
	be backend.Backend
	ts [3]backend.Tensor
	n  int
}

// expertOps queues expert id's matmuls on rank d (computeExpert).
func (s *Session) expertOps(r *run, d, id int, bound []backend.Tensor, xn backend.Buffer, b expertBufs, T int) {
	be := s.m.ranks[d].be
	pl := &s.plan
	H, I := s.m.Config.HiddenSize, s.m.Config.MoeIntermediateSize
	tr, _ := pl.expert(id)
	n := len(tr)
	x := xn
	if T > 1 {
		x = r.viewOn(be, b.xg, 0, n*H)
		r.do(be.Gather(x, xn, tr, H))
	}
	if r.err == nil {
		g := r.viewOn(be, b.eg, 0, n*I)
		u := r.viewOn(be, b.eu, 0, n*I)
		o := r.viewOn(be, b.eo, pl.slot[id]*H, n*H)
		if mb, ok := s.batcher(d, T); ok {
			s.batchedOps(r, mb, be, bound, x, g, u, o, n)
			return
		}
		if bt, ok := be.(backend.MatVecBatcher); ok && T == 1 {
			// Gate and up in one launch or dispatch (MatVecBatch's bits
			// are MatMul's): the CPUs' workers wake once for both.
			s.guY, s.guX = [2]backend.Buffer{g, u}, [2]backend.Buffer{x, x}
			r.do(bt.MatVecBatch(s.guY[:], bound[:2], s.guX[:]))
			s.guY, s.guX = [2]backend.Buffer{}, [2]backend.Buffer{}
		} else {
			r.do(be.MatMul(g, bound[0], x, n))
			r.do(be.MatMul(u, bound[1], x, n))
		}
		r.do(be.SwiGLU(g, g, u))
		r.do(be.MatMul(o, bound[2], g, n))
	}
}

// bindExpert binds a read expert on rank d: through its GPU tier when it
// has one (which may keep it), else with Bind.
func (s *Session) bindExpert(d, l, id int, w *[3]backend.Weight) ([]backend.Tensor, error) {
	rk := &s.m.ranks[d]
	if c := rk.cache; c != nil {
		return c.BindExpert(l, id, w[:])
	}
	// The session's own array: the caller computes and releases the three
	// before it binds the next expert.
	bound := s.bound[:len(w)]
	for i := range w {
		t, err := rk.be.Bind(w[i])
		if err != nil {
			for _, t := range bound[:i] {
				rk.be.Release(t)
			}
			return nil, err
		}
		bound[i] = t
	}
	return bound, nil
}

// batchHits turns batchExperts on (a variable so that
// BenchmarkTieredDecode can measure what it saves).
var batchHits = true

// batchExperts computes the experts ids of a one-token step on rank d,
// bound as ts, in three launches (gate and up of all, SwiGLU, down of all)
// instead of four per expert, and releases them. Each job computes what its
// own MatMul would, so the output is the same bit for bit.
func (s *Session) batchExperts(r *run, d int, bt backend.MatVecBatcher, ids []int, ts [][]backend.Tensor, xn backend.Buffer, b expertBufs) {
	be := s.m.ranks[d].be
	H, I, n := s.m.Config.HiddenSize, s.m.Config.MoeIntermediateSize, len(ids)
	g := r.viewOn(be, b.eg, 0, n*I)
	u := r.viewOn(be, b.eu, 0, n*I)
	ys := make([]backend.Buffer, 0, 2*n)
	ws := make([]backend.Tensor, 0, 2*n)
	xs := make([]backend.Buffer, 0, 2*n)
	for i := range ids {
		ys = append(ys, r.viewOn(be, g, i*I, I))
		ws = append(ws, ts[i][0])
	}
	for i := range ids {
		ys = append(ys, r.viewOn(be, u, i*I, I))
		ws = append(ws, ts[i][1])
	}
	for range ws {
		xs = append(xs, xn)
	}
	if r.err == nil {
		r.do(bt.MatVecBatch(ys, ws, xs))
		r.do(be.SwiGLU(g, g, u))
	}
	ys, ws, xs = ys[:0], ws[:0], xs[:0]
	for i, id := range ids {
		ys = append(ys, r.viewOn(be, b.eo, s.plan.slot[id]*H, H))
		ws = append(ws, ts[i][2])
		xs = append(xs, r.viewOn(be, g, i*I, I))
	}
	if r.err == nil {
		r.do(bt.MatVecBatch(ys, ws, xs))
	}
	for _, b := range ts {
		for _, t := range b {
			r.do(be.Release(t))
		}
	}
}
