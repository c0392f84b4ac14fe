package model

import "github.com/fmoe/fmoe/runtime/backend"

// On a backend with a batched matmul (backend.MatMulBatcher: CUDA), every
// expert of a many-token step goes through it, hits and misses alike:
// the GPU tier's hits of a layer in two batches, gate and up then down
// (groupExperts), each streamed miss in its own two (batchedOps). A
// job's bits do not depend on its batch, so a warm cache computes the
// rows a cold one does; one token keeps MatVecBatch and MatMul, which
// agree with each other.

// groupState is groupExperts' room, kept from layer to layer.
type groupState struct {
	rows []int
	ys   []backend.Buffer
	xs   []backend.Buffer
	ws   []backend.Tensor
	ts   []int
}

// batcher returns rank d's batched matmul for a T-token step, if it has one.
func (s *Session) batcher(d, T int) (backend.MatMulBatcher, bool) {
	if T < 2 {
		return nil, false
	}
	mb, ok := s.m.ranks[d].be.(backend.MatMulBatcher)
	return mb, ok
}

// groupExperts queues rank d's hits ids (bound as ts) of a T-token step in
// four steps whatever their number: one Gather of every hit's token rows,
// a batch of their gate and up projections, one SwiGLU, and a batch of
// their down projections into their slots; then releases them. The
// gathered rows are staged in eo, the experts' output rows: computeHits
// runs before any other expert of the layer writes there, and the down
// projections, which read only the SwiGLU rows, write it last.
func (s *Session) groupExperts(r *run, d int, mb backend.MatMulBatcher, ids []int, ts [][]backend.Tensor, xn backend.Buffer, b expertBufs) {
	be := s.m.ranks[d].be
	pl, g := &s.plan, &s.grp
	H, I := s.m.Config.HiddenSize, s.m.Config.MoeIntermediateSize
	g.rows, g.ys, g.xs, g.ws, g.ts = g.rows[:0], g.ys[:0], g.xs[:0], g.ws[:0], g.ts[:0]
	for _, id := range ids {
		tr, _ := pl.expert(id)
		g.rows = append(g.rows, tr...)
	}
	N := len(g.rows)
	if r.err == nil {
		r.do(be.Gather(r.viewOn(be, b.eo, 0, N*H), xn, g.rows, H))
	}
	// proj adds one projection's jobs to the batch: expert i's rows from
	// its first row off of in (width cin) through ts[i][p] to out (width
	// cout) at its own first row, or at its slot when slot is set.
	proj := func(p int, out, in backend.Buffer, cout, cin int, slot bool) {
		off := 0
		for i, id := range ids {
			tr, _ := pl.expert(id)
			k, o := len(tr), off
			if slot {
				o = pl.slot[id]
			}
			g.ys = append(g.ys, r.viewOn(be, out, o*cout, k*cout))
			g.xs = append(g.xs, r.viewOn(be, in, off*cin, k*cin))
			g.ws = append(g.ws, ts[i][p])
			g.ts = append(g.ts, k)
			off += k
		}
	}
	batch := func() {
		if r.err == nil {
			r.do(mb.MatMulBatch(g.ys, g.ws, g.xs, g.ts))
		}
		g.ys, g.xs, g.ws, g.ts = g.ys[:0], g.xs[:0], g.ws[:0], g.ts[:0]
	}
	proj(0, b.eg, b.eo, I, H, false)
	proj(1, b.eu, b.eo, I, H, false)
	batch()
	if r.err == nil {
		gv := r.viewOn(be, b.eg, 0, N*I)
		r.do(be.SwiGLU(gv, gv, r.viewOn(be, b.eu, 0, N*I)))
	}
	proj(2, b.eo, b.eg, H, I, true)
	batch()
	for _, t := range ts {
		for _, x := range t {
			if x != nil {
				r.do(be.Release(x))
			}
		}
	}
}

// batchedOps is expertOps through rank d's batched matmul: the expert's n
// gathered rows x through gate and up as one batch, then down as another,
// so that a miss computes the bits groupExperts computes for a hit.
func (s *Session) batchedOps(r *run, mb backend.MatMulBatcher, be backend.Backend, bound []backend.Tensor, x, g, u, o backend.Buffer, n int) {
	if r.err == nil {
		r.do(mb.MatMulBatch([]backend.Buffer{g, u}, bound[:2], []backend.Buffer{x, x}, []int{n, n}))
	}
	if r.err == nil {
		r.do(be.SwiGLU(g, g, u))
	}
	if r.err == nil {
		r.do(mb.MatMulBatch([]backend.Buffer{o}, bound[2:3], []backend.Buffer{g}, []int{n}))
	}
}
