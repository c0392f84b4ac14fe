package model

import (
	"fmt"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
)

// moeFixed queues the MoE block's ops that depend on xn alone: the router
// logits (into s.sc.router) and the shared expert (into s.sc.sd and, when
// gated, s.sc.sgate). It needs no decision on the host, so a decode step
// records it with the layer's mixer into one graph (graph.go); moe then
// does the rest.
func (s *Session) moeFixed(r *run, L *layer, xn backend.Buffer, T int) {
	m := s.m
	c := &m.Config
	be := m.be
	r.do(be.MatMul(r.view(s.sc.router, 0, T*c.NumExperts), L.router, xn, T))
	s.lap(PhaseRouting)
	if L.shGate == nil {
		return
	}
	Is := c.SharedExpertIntermediateSize
	sg := r.view(s.sc.sg, 0, T*Is)
	su := r.view(s.sc.su, 0, T*Is)
	r.do(be.MatMul(sg, L.shGate, xn, T))
	r.do(be.MatMul(su, L.shUp, xn, T))
	r.do(be.SwiGLU(sg, sg, su))
	r.do(be.MatMul(r.view(s.sc.sd, 0, T*c.HiddenSize), L.shDown, sg, T))
	if L.shScale != nil {
		r.do(be.MatMul(r.view(s.sc.sgate, 0, T), L.shScale, xn, T))
	}
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
	lg := r.view(s.sc.router, 0, T*E)
	pl := &s.plan
	pl.reset(T, E, K)
	r.do(be.Read(pl.host, lg))
	if r.err != nil {
		return r.err
	}
	idx, wts := pl.idx, pl.wts
	for t := 0; t < T; t++ {
		if err := s.route(pl.host[t*E:(t+1)*E], l, t, idx[t*K:(t+1)*K], wts[t*K:(t+1)*K]); err != nil {
			return err
		}
	}
	if s.onRoute != nil {
		s.onRoute(l, idx, wts)
	}
	// Each expert writes its weighted rows into its own slot range of
	// s.sc.eo (pl.rows order); the slots are then summed in ascending
	// expert order, as transformers' index_add_ loop does. Summing in
	// read-completion order instead would make results vary from run to run.
	pl.group(K)
	ids, allRows, allW := pl.ids, pl.rows, pl.w
	I := c.MoeIntermediateSize
	s.lap(PhaseRouting)
	// The stream's time is the compute inside fn plus what is left, which
	// is the compute waiting for reads: expert_io_wait.
	tp := s.tm.p
	var inFn time.Duration
	// compute queues expert id's matmuls on tensors bound from the cache
	// or from its read, then releases them.
	compute := func(id int, bound []backend.Tensor) {
		tr, slot := pl.expert(id)
		n := len(tr)
		x := xn
		if T > 1 {
			x = r.view(s.sc.xg, 0, n*H)
			r.do(be.Gather(x, xn, tr, H))
		}
		if r.err == nil {
			g := r.view(s.sc.eg, 0, n*I)
			u := r.view(s.sc.eu, 0, n*I)
			d := r.view(s.sc.eo, slot*H, n*H)
			r.do(be.MatMul(g, bound[0], x, n))
			r.do(be.MatMul(u, bound[1], x, n))
			r.do(be.SwiGLU(g, g, u))
			r.do(be.MatMul(d, bound[2], g, n))
		}
		for _, t := range bound {
			if t != nil {
				r.do(be.Release(t))
			}
		}
	}
	// GPU-tier hits first: their kernels run while the misses are read.
	miss := ids
	if m.cache != nil {
		miss = miss[:0:0]
		var hits []int
		var hitT [][]backend.Tensor
		for _, id := range ids {
			if bound, ok := m.cache.CachedExpert(l, id); ok {
				hits, hitT = append(hits, id), append(hitT, bound)
				continue
			}
			miss = append(miss, id)
		}
		m.stats.GPUHits += int64(len(hits))
		if tp != nil {
			tp.GPUHits += int64(len(hits))
		}
		if bt, ok := be.(backend.MatVecBatcher); ok && batchHits && T == 1 && len(hits) > 1 {
			s.batchExperts(r, bt, hits, hitT, xn, pl)
		} else {
			for i, id := range hits {
				compute(id, hitT[i])
			}
		}
		if r.err != nil {
			return r.err
		}
	}
	err := m.experts.streamTimed(l, miss, tp, func(id int, w *[3]backend.Weight) error {
		var t0 time.Time
		if tp != nil {
			t0 = time.Now()
			defer func() { inFn += time.Since(t0) }()
		}
		bound, err := s.bindExpert(l, id, w)
		if err != nil {
			return fmt.Errorf("expert %d: %w", id, err)
		}
		if m.cache != nil {
			var n int64
			for i := range w {
				n += int64(len(w[i].Data) + len(w[i].Scales) + len(w[i].Biases))
			}
			m.stats.DeviceBytes += n
			if tp != nil {
				tp.DeviceBytes += n
			}
		}
		compute(id, bound)
		return r.err
	})
	m.stats.Uses += int64(len(ids))
	if tp != nil {
		tp.ExpertUses += int64(len(ids))
	}
	if tp != nil {
		now := time.Now()
		tp.Time[PhaseExpertCompute] += inFn
		tp.Time[PhaseExpertWait] += now.Sub(s.tm.last) - inFn
		s.tm.last = now
		s.lap(PhaseExpertCompute) // compute still queued on an asynchronous backend
	}
	if err != nil {
		return err
	}
	// out = Σ_experts w·expert + sigmoid(g)·shared, then the residual add,
	// in transformers' order.
	if tc, ok := be.(backend.TokenCombiner); ok && T == 1 && len(allW) <= 32 && !combineOff {
		// One launch for the same arithmetic (the token's rows are its
		// expert slots in order).
		var sd, gt backend.Buffer
		if L.shGate != nil {
			sd = r.view(s.sc.sd, 0, H)
			if L.shScale != nil {
				gt = r.view(s.sc.sgate, 0, 1)
			}
		}
		r.do(tc.CombineToken(h, r.view(s.sc.eo, 0, len(allW)*H), allW, sd, gt))
		s.lap(PhaseCombine)
		return r.err
	}
	acc := r.view(s.sc.acc, 0, T*H)
	r.do(be.Zero(acc))
	r.do(be.ScatterAdd(acc, r.view(s.sc.eo, 0, len(allRows)*H), allRows, allW, H))
	s.lap(PhaseCombine)
	if L.shGate != nil {
		sd := r.view(s.sc.sd, 0, T*H)
		if L.shScale == nil { // GLM-4.5's shared experts are added as they are
			r.do(be.Add(acc, sd))
		} else {
			r.do(be.GatedAdd(acc, sd, r.view(s.sc.sgate, 0, T), T))
		}
	}
	r.do(be.Add(h, acc))
	s.lap(PhaseCombine)
	return r.err
}

// bindExpert binds a read expert: through the GPU tier when there is one
// (which may keep it), else with Bind.
func (s *Session) bindExpert(l, id int, w *[3]backend.Weight) ([]backend.Tensor, error) {
	be := s.m.be
	if c := s.m.cache; c != nil {
		return c.BindExpert(l, id, w[:])
	}
	bound := make([]backend.Tensor, len(w))
	for i := range w {
		t, err := be.Bind(w[i])
		if err != nil {
			for _, t := range bound[:i] {
				be.Release(t)
			}
			return nil, err
		}
		bound[i] = t
	}
	return bound, nil
}

// combineOff makes a one-token step combine with the separate ops even
// where the backend fuses them (tests compare the two).
var combineOff = false

// batchHits turns batchExperts on (a variable so that
// BenchmarkTieredDecode can measure what it saves).
var batchHits = true

// batchExperts computes the experts ids of a one-token step, bound as ts,
// in three launches (gate and up of all, SwiGLU, down of all) instead of
// four per expert, and releases them. Each job computes what its own
// MatMul would, so the output is the same bit for bit.
func (s *Session) batchExperts(r *run, bt backend.MatVecBatcher, ids []int, ts [][]backend.Tensor, xn backend.Buffer, pl *moePlan) {
	be := s.m.be
	H, I, n := s.m.Config.HiddenSize, s.m.Config.MoeIntermediateSize, len(ids)
	g := r.view(s.sc.eg, 0, n*I)
	u := r.view(s.sc.eu, 0, n*I)
	ys := make([]backend.Buffer, 0, 2*n)
	ws := make([]backend.Tensor, 0, 2*n)
	xs := make([]backend.Buffer, 0, 2*n)
	for i := range ids {
		ys = append(ys, r.view(g, i*I, I))
		ws = append(ws, ts[i][0])
	}
	for i := range ids {
		ys = append(ys, r.view(u, i*I, I))
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
		_, slot := pl.expert(id)
		ys = append(ys, r.view(s.sc.eo, slot*H, H))
		ws = append(ws, ts[i][2])
		xs = append(xs, r.view(g, i*I, I))
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
