package model

import (
	"context"
	"errors"
	"fmt"
	"runtime/trace"
	"strconv"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Computing GPU-tier misses on the CPU (Options.MissBackend; issue 12 §2,
// the Fiddler/ktransformers idea): a miss costs the GPU path a read into
// pinned memory, a checksum on first read, a host-to-device copy and the
// compute; the CPU needs no copy to the device. Whether that wins is to be
// measured (BENCH_TIERS=scaled-cpumiss, docs/benchmarks.md); this is the
// vehicle. It is expert parallelism with a placement decided per step: the
// miss backend is a further rank, rank 0 keeps the experts its GPU tier
// holds in this layer and the miss rank computes the others, each into its
// partial sum, which the collective adds (ranks.go, routed.go). Misses
// are still read by the one expert stream and checked as every read is
// (integrity.go): the step awaits their checksums before it returns.
//
// The tier must still fill: an expert's first miss in the process takes
// the GPU path (read, copied, offered to the tier as without a miss rank);
// only its later misses go to the miss rank. After warm-up the tier then
// holds what it admitted while experts were new, not the hottest — a
// policy to revisit if the measurement says CPU misses win.

// share is the share of the repeat misses the miss rank takes now.
func (m *Model) share() float64 {
	if m.tune != nil {
		return m.tune.value()
	}
	return m.missShare
}

// oneDevice reports whether the routed experts run on rank 0's device
// alone, or there and on a miss rank.
func (m *Model) oneDevice() bool {
	return len(m.ranks) == 1 || len(m.ranks) == 2 && m.miss == 1
}

// setupMissRank adds Options.MissBackend as the last rank.
func (m *Model) setupMissRank(opts Options, bes *[]backend.Backend) error {
	be := opts.MissBackend
	if sh := opts.MissShare; !(sh >= 0 && sh <= 1) || sh != 0 && be == nil {
		return fmt.Errorf("model: a miss share of %v: want a share in (0, 1] of the misses a miss backend computes", sh)
	}
	if opts.MissAffine && !opts.MissAuto {
		return errors.New("model: an affine split of the misses (MissAffine) without an automatic share (MissAuto)")
	}
	if be == nil {
		if opts.MissAuto {
			return errors.New("model: an automatic miss share without a miss backend")
		}
		return nil
	}
	m.missShare, m.missPrime, m.missTask, m.missAdmit = opts.MissShare, opts.MissPrime, opts.MissTask, opts.MissAdmit
	if m.missShare == 0 {
		m.missShare = 1
	}
	if opts.MissAuto {
		m.tune = newShareTuner(opts.MissShare, opts.MissAffine)
	}
	if len(opts.Devices) > 0 || opts.Placement != nil {
		return errors.New("model: a miss backend (CPU misses) runs beside one device only: it cannot be combined with further devices or an expert placement")
	}
	if be == m.be {
		return fmt.Errorf("model: the miss backend (%s) is the model's backend: it needs a backend of its own", be.Name())
	}
	m.miss = len(m.ranks)
	m.offered = newVerified(m.Config.NumHiddenLayers, m.Config.NumExperts)
	m.ranks = append(m.ranks, newRank(be))
	*bes = append(*bes, be)
	return nil
}

// routedMiss is routed with a miss rank: rank 0's GPU tier is looked up
// first, the plan split by the answer (hits on rank 0, misses on the miss
// rank), the hits queued on rank 0 and the misses read and computed on the
// miss rank meanwhile. A layer without misses runs on rank 0 alone, with
// no exchange: the same operations as one rank, so the same bits.
//
// With fuse (a one-token step) no partial sums are exchanged: the miss
// rank's expert rows are written into rank 0's rows at their slots (16 KB
// each, queued, no wait) and the caller's one combine launch adds every
// row as on one rank, so the host never waits for the device's hits.
func (s *Session) routedMiss(r *run, l int, xn, acc backend.Buffer, T int, fuse bool) error {
	m := s.m
	pl := &s.plan
	H := m.Config.HiddenSize
	if m.experts.pendingIn(l) {
		if err := m.settleChecks(); err != nil {
			return err
		}
	}
	s.mown = growTo(s.mown, m.Config.NumExperts)
	hits, hitT, miss, toMiss := s.lookupHits(l, T)
	n := 1
	if toMiss > 0 {
		n = len(m.ranks)
	}
	bufs, err := s.rankBufs(xn, acc, T)
	if err != nil {
		return err
	}
	if fuse {
		// Every row at its slot of the whole plan, on either rank, as
		// the combine on rank 0 reads them.
		pl.split(nil, n)
	} else {
		pl.split(s.mown, n)
	}
	s.rx, s.racc = growTo(s.rx, n), growTo(s.racc, n)
	xs, accs := s.rx, s.racc
	for d := range n {
		xs[d] = r.viewOn(m.ranks[d].be, bufs[d].xn, 0, T*H)
		accs[d] = r.viewOn(m.ranks[d].be, bufs[d].acc, 0, T*H)
	}
	// The broadcast reads xn back before the hits are queued, so that the
	// device computes them while the miss rank works.
	if n > 1 && r.err == nil {
		r.do(m.coll.Broadcast(xs, 0))
	}
	s.lap(PhaseExchange)
	s.computeHits(r, 0, hits, hitT, xs[0], bufs[0], T)
	if r.err != nil {
		return r.err
	}
	if s.onMiss == nil {
		s.onMiss = func(id int) bool { return s.mown[id] == m.miss }
	}
	var ap *apartShare
	if fuse && toMiss > 0 {
		var ok bool
		if ap, ok, err = s.startApart(l, s.cpuMiss, xs[m.miss], bufs[m.miss]); err != nil {
			return err
		}
		if ok {
			// The link's misses alone go through the stream.
			lm := s.miss[:0]
			for _, id := range miss {
				if s.mown[id] == 0 {
					lm = append(lm, id)
				}
			}
			s.miss, miss = lm, lm
		}
	}
	err = s.streamMisses(r, l, miss, s.onMiss, s.mown, xs, bufs, T, len(pl.ids), nil)
	if ap != nil {
		// Always waited for: its goroutine reads the pinned host tier.
		err = errors.Join(err, ap.wait(m.ranks[m.miss].be, m.experts.tier))
		s.observeShare(ap, len(miss))
	}
	m.stats.MissRank += int64(toMiss)
	if tp := s.tm.p; tp != nil {
		tp.MissRank += int64(toMiss)
	}
	if err != nil {
		return err
	}
	if fuse {
		if n > 1 {
			s.sendRows(r, bufs)
		}
		return r.err
	}
	s.sumParts(r, bufs[:n], accs)
	return r.err
}

// firstMiss marks expert id of layer l offered to the GPU tier and
// reports whether this is its first miss in the process (which takes the
// link, so that the tier admits it).
func (m *Model) firstMiss(l, id int) bool {
	bit := uint64(1) << (id % 64)
	return m.offered[l][id/64].Or(bit)&bit == 0
}

// sendRows writes the miss rank's expert rows of a one-token step into
// rank 0's rows at the same slots (the whole plan's: split(nil)).
func (s *Session) sendRows(r *run, bufs []expertBufs) {
	m, pl := s.m, &s.plan
	H := m.Config.HiddenSize
	mb, be := m.ranks[m.miss].be, m.ranks[0].be
	s.row = growTo(s.row, H)
	for _, id := range s.cpuMiss {
		off := pl.slot[id] * H
		if r.err == nil {
			r.do(mb.Read(s.row, r.viewOn(mb, bufs[m.miss].eo, off, H)))
		}
		if r.err == nil {
			r.do(be.Write(r.viewOn(be, bufs[0].eo, off, H), s.row))
		}
	}
	s.lap(PhaseExchange)
}

// lookupHits asks rank 0's GPU tier for each of the layer's experts and
// records in mown the rank that computes it: the hits (returned bound)
// and first misses stay on rank 0, and of the later misses the miss rank
// takes its share of a one-token step's (toMiss of miss, shareRepeats),
// the others go to rank 0. Without a tier every expert misses. miss
// interleaves rank 0's misses with the miss rank's, rank 0's first: the
// stream releases a copied expert's binds (waiting for its copy) only
// after the next expert's work is queued or done, so a copy runs while the
// miss rank computes the expert after it, and the link and the CPUs work
// side by side. (Rank 0's misses all first left the CPUs idle until the
// last copy but one had finished: issue 12's run 9.)
func (s *Session) lookupHits(l, T int) (hits []int, hitT [][]backend.Tensor, miss []int, toMiss int) {
	m := s.m
	c := m.ranks[0].cache
	repeat := s.repeat[:0]
	for _, id := range s.plan.ids {
		if c != nil {
			if bound, ok := c.CachedExpert(l, id); ok {
				hits, hitT = append(hits, id), append(hitT, bound)
				s.mown[id] = 0
				continue
			}
		}
		if m.firstMiss(l, id) {
			s.mown[id] = 0 // the first miss: offered to the tier
			miss = append(miss, id)
			continue
		}
		repeat = append(repeat, id)
	}
	s.repeat, s.firsts = repeat, len(miss)
	miss, s.cpuMiss = s.shareRepeats(l, miss, repeat, T)
	toMiss = len(s.cpuMiss)
	s.mixed = interleave(s.mixed[:0], miss, s.cpuMiss)
	miss = s.mixed
	m.stats.GPUHits += int64(len(hits))
	if tp := s.tm.p; tp != nil {
		tp.GPUHits += int64(len(hits))
	}
	return hits, hitT, miss, toMiss
}

// shareRepeats gives the miss rank its share of a one-token step's repeat
// misses and appends the others to link (rank 0's: copied as without a
// miss rank). A step of T > 1 tokens (a prompt) gives it none: the CPU's
// work on an expert grows with the tokens that use it (T matvecs, the 4-bit
// kernel compute-bound on a core), the link's copy does not, so a prompt's
// share on the CPU would cost many times its copy. The share is counted
// over every repeat miss of the one-token steps (missDue), but taken
// from those the host tier holds, when there is one: the miss rank
// computes a one-token step's share apart only when the host tier holds
// all of it (startApart), and one expert it lacks would send the whole
// share to the slower interleaved path. Credit a step cannot spend so
// (fewer held than due) is dropped, not carried: the link has taken
// those experts.
func (s *Session) shareRepeats(l int, link, repeat []int, T int) (_, cpu []int) {
	m := s.m
	cpu = s.cpuMiss[:0]
	if T > 1 {
		for _, id := range repeat {
			s.mown[id] = 0
		}
		return append(link, repeat...), cpu
	}
	due, share := 0, m.share()
	for range repeat {
		if s.missDue += share; s.missDue >= 1 {
			s.missDue--
			due++
		}
	}
	t := m.experts.tier
	for _, id := range repeat {
		if len(cpu) < due && (t == nil || t.holds(l, id)) {
			s.mown[id] = m.miss
			cpu = append(cpu, id)
			continue
		}
		s.mown[id] = 0
		link = append(link, id)
	}
	return link, cpu
}

// countCopied adds an expert copied to rank 0's device to the counters.
func (s *Session) countCopied(w *[3]backend.Weight) {
	var n int64
	for i := range w {
		n += int64(len(w[i].Data) + len(w[i].Scales) + len(w[i].Biases))
	}
	s.m.stats.DeviceBytes += n
	if tp := s.tm.p; tp != nil {
		tp.DeviceBytes += n
	}
}

// interleave appends a and b to dst in one order that spreads each
// evenly over the other's, a's first: the next is taken from whichever
// list has the smaller share of its items taken (a on ties).
func interleave(dst, a, b []int) []int {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		if j == len(b) || i < len(a) && i*len(b) <= j*len(a) {
			dst = append(dst, a[i])
			i++
			continue
		}
		dst = append(dst, b[j])
		j++
	}
	return dst
}

// missApart gives the miss rank its share of a one-token step on a
// goroutine of its own. Session 23 measured (docs/benchmarks.md, "Can the
// CPUs add bandwidth beside the link?") the link keeping its rate beside
// the CPU backend's batched experts, and the interleaved miss rank losing
// to the link alone because the CPUs and the link took turns on one
// goroutine; session 24 measured this path beating both at K=10. Apart,
// the share's experts are computed from the host tier in two batched
// dispatches while this goroutine binds and queues the link's. Each job
// computes what its MatMul would, so the rows are the interleaved path's
// bit for bit. Off (tests, BenchmarkTieredDecode's "interleaved" lever)
// leaves every share to the interleaved path.
var missApart = true

// onApart, when set (tests), is told how many experts each apart share
// computed.
var onApart func(n int)

// apartShare is the miss rank's share of a step computed apart: the host
// tier's entries it pinned and the tensors it bound, released by wait.
type apartShare struct {
	pinned []*hentry
	bound  []backend.Tensor
	done   chan error     // the share's goroutine's end (computeApart)
	task   expertsStarter // or the backend's own threads' (Options.MissTask)
	// n experts, started at start, computed in took; link is from start
	// to the host's wait, or to stampLink's call (the link's misses
	// streamed meanwhile).
	n          int
	start      time.Time
	took, link time.Duration
	mark       hostMarker // the device's timeline, if it keeps one
}

// hostMarker is a backend that keeps a timeline of its streams
// (cuda.Backend under FMOE_CUDA_TRACE): the share's start, the host's
// wait for it and its end go in as host-only marks, beside the link's
// copies, so a trace of issue 13's row 2 shows which side a layer waits
// for. A no-op without a timeline.
type hostMarker interface{ MarkHost(label string, arg int) }

func (a *apartShare) markHost(label string, arg int) {
	if a.mark != nil {
		a.mark.MarkHost(label, arg)
	}
}

// startApart starts the miss rank's share ids of layer l on a goroutine
// of its own if the host tier holds every one of them; else it pins
// nothing and reports false (the interleaved path then reads them). The
// rows go to the miss rank's output rows at their slots, as expertOps
// writes them; x is the miss rank's copy of the normed input.
func (s *Session) startApart(l int, ids []int, x backend.Buffer, b expertBufs) (*apartShare, bool, error) {
	m := s.m
	t := m.experts.tier
	if !missApart || t == nil || len(ids) == 0 {
		return nil, false, nil
	}
	defer shareRegion("share.start")()
	if trace.IsEnabled() {
		trace.Log(context.Background(), "share.experts", strconv.Itoa(len(ids)))
	}
	a := &apartShare{}
	var ws [][3]backend.Weight
	for _, id := range ids {
		te, buf, hit := t.lookup(l, id)
		if !hit {
			a.unpin(t)
			return nil, false, nil
		}
		a.pinned = append(a.pinned, te)
		var w [3]backend.Weight
		if err := m.experts.weightsOver(buf, &w); err != nil {
			a.unpin(t)
			return nil, false, layerError(l, fmt.Errorf("model: layer %d expert %d: %w", l, id, err))
		}
		ws = append(ws, w)
	}
	be := m.ranks[m.miss].be
	j, err := s.apartJobs(be, ids, ws, x, b)
	a.bound = append(append(a.bound, j.gu...), j.down...)
	if err != nil {
		return nil, false, errors.Join(err, a.wait(be, t))
	}
	a.n, a.start = len(ids), time.Now()
	a.mark, _ = m.be.(hostMarker)
	a.markHost("share.start", a.n)
	if st, ok := be.(expertsStarter); ok && m.missTask {
		if err := st.StartExperts(j.gus, j.gu, x, j.outs, j.down); err != nil {
			return nil, false, errors.Join(err, a.wait(be, t))
		}
		a.task = st
	} else {
		a.done = make(chan error, 1)
		go func() {
			err := computeApart(be, j)
			a.took = time.Since(a.start)
			a.done <- err
		}()
	}
	// Host-tier hits, counted as the stream counts its own (take).
	m.experts.hostHits += int64(len(ids))
	if tp := s.tm.p; tp != nil {
		tp.HostHits += int64(len(ids))
	}
	if onApart != nil {
		onApart(len(ids))
	}
	return a, true, nil
}

// shareJobs is a share's work for computeApart: gu[2i], gu[2i+1] (gate
// and up of expert i, on xs[2i], xs[2i+1]) into gus[2i], gus[2i+1], which
// are the i-th I-wide parts of g and u; down[i] on gus[2i] into outs[i].
type shareJobs struct {
	gu, down      []backend.Tensor
	xs, gus, outs []backend.Buffer
	g, u          backend.Buffer
}

// apartJobs binds the share's weights on the miss rank and lays out its
// jobs: gate and up of expert i into the i-th I-wide rows of eg and eu,
// its down into its slot of eo.
func (s *Session) apartJobs(be backend.Backend, ids []int, ws [][3]backend.Weight, x backend.Buffer, b expertBufs) (j shareJobs, err error) {
	H, I := s.m.Config.HiddenSize, s.m.Config.MoeIntermediateSize
	view := func(buf backend.Buffer, off, n int) backend.Buffer {
		v, e := be.View(buf, off, n)
		err = errors.Join(err, e)
		return v
	}
	for i, id := range ids {
		for k := range ws[i] {
			t, e := be.Bind(ws[i][k])
			if e != nil {
				return j, e
			}
			if k < 2 {
				j.gu = append(j.gu, t)
			} else {
				j.down = append(j.down, t)
			}
		}
		j.gus = append(j.gus, view(b.eg, i*I, I), view(b.eu, i*I, I))
		j.xs = append(j.xs, x, x)
		j.outs = append(j.outs, view(b.eo, s.plan.slot[id]*H, H))
	}
	j.g, j.u = view(b.eg, 0, len(ids)*I), view(b.eu, 0, len(ids)*I)
	return j, err
}

// computeApart runs the share: every gate and up in one dispatch, one
// SwiGLU over all of them into the gates (a backend may spread it over its
// threads; an expert's alone is too short to), every down in one.
func computeApart(be backend.Backend, j shareJobs) error {
	bt, ok := be.(backend.MatVecBatcher)
	if !ok {
		return fmt.Errorf("model: the miss backend (%s) does not batch matvecs", be.Name())
	}
	end := shareRegion("share.gateup")
	err := bt.MatVecBatch(j.gus, j.gu, j.xs)
	end()
	if err != nil {
		return err
	}
	end = shareRegion("share.swiglu")
	err = be.SwiGLU(j.g, j.g, j.u)
	end()
	if err != nil {
		return err
	}
	gs := make([]backend.Buffer, len(j.down))
	for i := range gs {
		gs[i] = j.gus[2*i]
	}
	defer shareRegion("share.down")()
	return bt.MatVecBatch(j.outs, j.down, gs)
}

// shareRegion marks a stage of the CPU share in a Go execution trace
// (fmoe-run's FMOE_GO_TRACE), where the goroutines' waits for a thread
// show beside it, so the share's fixed cost can be taken apart on the
// GPU machine; without a trace it costs a flag's load.
func shareRegion(name string) func() {
	if !trace.IsEnabled() {
		return func() {}
	}
	return trace.StartRegion(context.Background(), name).End
}

// observeShare gives an automatic share (Model.tune) the figures of a
// share computed apart beside nLink misses on the link, when every one of
// those was a repeat miss: a first miss's read from the page cache or
// disk and its checksum are no part of the link's rate.
func (s *Session) observeShare(a *apartShare, nLink int) {
	if t := s.m.tune; t != nil && s.firsts == 0 {
		t.observe(a.n, a.took, nLink, a.link)
	}
}

// wait waits for the share (if started), releases its tensors and unpins
// its host-tier entries, and returns every error met.
func (a *apartShare) wait(be backend.Backend, t *hostTier) error {
	var err error
	if a.task != nil || a.done != nil {
		a.stampLink()
		a.markHost("share.wait", a.n)
		end := shareRegion("share.wait")
		if a.task != nil {
			a.took, err = a.task.WaitExperts()
		} else {
			err = <-a.done
		}
		end()
		a.markHost("share.done", int(a.took.Microseconds()))
	}
	for _, b := range a.bound {
		if b != nil {
			err = errors.Join(err, be.Release(b))
		}
	}
	a.unpin(t)
	return err
}

// stampLink ends the link's part: the first call counts.
func (a *apartShare) stampLink() {
	if a.link == 0 {
		a.link = time.Since(a.start)
	}
}

func (a *apartShare) unpin(t *hostTier) {
	for _, te := range a.pinned {
		t.put(te, true)
	}
	a.pinned = nil
}

// expertsStarter is a miss backend that computes a share on its own
// threads while the caller goes on, with no goroutine of the share's own
// and no op between its phases (cpu.Backend.StartExperts, whose outputs
// are computeApart's bit for bit); used with Options.MissTask.
type expertsStarter interface {
	StartExperts(gus []backend.Buffer, gu []backend.Tensor, x backend.Buffer, outs []backend.Buffer, down []backend.Tensor) error
	WaitExperts() (time.Duration, error)
}

// primer is a miss backend whose idle threads can be told to expect an op
// (cpu.Backend.Prime).
type primer interface{ Prime(d time.Duration) }

// primeMiss primes the miss rank's threads before a one-token step's layer
// waits for its routing (Options.MissPrime).
func (s *Session) primeMiss(T int) {
	m := s.m
	if T != 1 || m.miss == 0 || m.missPrime <= 0 {
		return
	}
	if p, ok := m.ranks[m.miss].be.(primer); ok {
		p.Prime(m.missPrime)
	}
}
