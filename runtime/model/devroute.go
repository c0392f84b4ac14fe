package model

import (
	"fmt"
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
)

// A decode step routed on the device (docs/gpu-decode.md A–C). When the
// backend routes on the device (backend.DeviceRouter) and its expert cache
// holds every expert of a layer (backend.IndexedExperts), that layer's MoE
// block needs nothing from the host: the router's top-K, the experts read
// from the cache by the ids it wrote, and the combine with its weights are
// queued with no read-back, and they join the layer's graph (graph.go), so
// a resident layer is one replay. The step reads the ids of every such
// layer once, after its logits (one copy, with the status word), for the
// counts the host path keeps per layer (uses, hits, the load per expert).
//
// It computes the sums of the host path in its order (the router's ids
// come in ascending id, the order the host's combine adds them in); only
// the weights may differ, by 2 float32 ulps (a device's exp).

// devOff turns the device-routed path off (tests and benchmarks compare the
// two).
var devOff = false

// devRule is a layer's router as the device runs it; nil: the layer's
// router has no device form (its layers route on the host).
type devRule struct {
	renorm bool // softmax top-K renormalised over the K (else over all E)
}

// devState is what a session keeps of its device-routed layers within a step.
type devState struct {
	used []bool    // layer l routed on the device in this step
	any  bool      // some layer did
	host []float32 // the read-back: status, then ids [layers, K]
	part []float32 // a partly held layer's ids (devpartial.go)
	// table: this step's picks are Routes' (RoutesAhead), uploaded at its
	// start (devTable); up is that upload, plan one layer's choice.
	table bool
	up    []float32
	plan  moePlan
}

// devBufLen is the values of the scratch's device-routing buffer: the
// status word, every layer's K ids, then every layer's K weights, then a
// word the indexed experts of a partly held layer mark their misses in
// (devPartial: the host finds them itself, so it is never read), then K
// ids and K weights the top-K writes when the picks are uploaded
// (devTable), then a partly held layer's read-back when it predicts
// (predArea: its K ids, the prediction's K ids and K weights), then, with
// a miss rank, its normed input, read back with the ids (partShares).
func devBufLen(m *Model) int { return devAt(m, devX) + m.Config.HiddenSize }

// The parts of the device-routing buffer past every layer's ids and
// weights (devBufLen), for devAt.
const (
	devMissed  = iota // the word a partly held layer's misses mark
	devScratch        // the top-K's K ids and K weights with the picks uploaded
	devPred           // a predicting partly held layer's read-back (predArea)
	devX              // a partly held layer's normed input for a miss rank (partShares)
)

// devAt is where part (devMissed, devScratch, devPred, devX) of m's
// device-routing buffer begins.
func devAt(m *Model, part int) int {
	return 1 + 2*len(m.layers)*m.K + [...]int{0, 1, 1 + 2*m.K, 1 + 5*m.K}[part]
}

// devRouted reports whether layer l's MoE block of a T-token step runs on
// the device.
func (s *Session) devRouted(l int, L *layer, T int) bool {
	ie, ok := s.devEligible(l, L, T)
	return ok && ie.LayerCached(l, s.m.Config.NumExperts)
}

// devEligible is devRouted but for the tier's holding every expert of
// the layer, which it leaves to the caller (devRouted, devPartial).
func (s *Session) devEligible(l int, L *layer, T int) (backend.IndexedExperts, bool) {
	m := s.m
	// A miss rank beside the device keeps it: a partly held layer gives
	// the rank its share of the misses once the ids are back (partShares).
	if devOff || T != 1 || L.dev == nil || m.K > maxDevK || !m.oneDevice() || m.ranks[0].cache == nil {
		return nil, false
	}
	// What observes or replaces the host's choice needs the host path,
	// but for a source whose choices the step took at its start (devTable).
	if (s.Routes != nil && !s.dev.table) || s.RouteLog != nil || s.onRoute != nil || s.onRouteIn != nil {
		return nil, false
	}
	if _, ok := m.be.(backend.DeviceRouter); !ok {
		return nil, false
	}
	ie, ok := m.be.(backend.IndexedExperts)
	if !ok {
		return nil, false
	}
	if m.experts.pendingIn(l) {
		// An expert of the layer is cached before its first read's
		// checksum ended: the host path settles it first.
		return nil, false
	}
	return ie, true
}

// maxDevK is the most experts per token the device combine takes.
const maxDevK = 32

// devStart begins a T-token step's device bookkeeping: the status word to
// zero, and with a source that chooses ahead, a one-token step's picks
// uploaded (devTable).
func (s *Session) devStart(r *run, T int) {
	d := &s.dev
	if len(d.used) != len(s.m.layers) {
		d.used = make([]bool, len(s.m.layers))
	}
	clear(d.used)
	d.any = false
	d.table = T == 1 && s.Routes != nil && s.RoutesAhead
	if d.table {
		s.devTable(r)
		return
	}
	r.do(s.m.be.Zero(r.view(s.sc.dev, 0, 1)))
}

// devTable uploads a one-token step's picks of every layer the device can
// route, from Routes, into the device-routing buffer where the device's
// top-K would write them: each layer's K ids in ascending id with their
// weights, as the device router leaves them (the order the combine adds
// them in, the host path's), and the status word zeroed. The device's
// top-K still runs, into a scratch of its own (routeIndexed), so that the
// layer costs what it costs with the model's router; the host still reads
// a partly held layer's ids back (devpartial.go), as it would then.
func (s *Session) devTable(r *run) {
	m := s.m
	d := &s.dev
	K, L, E := m.K, len(m.layers), m.Config.NumExperts
	n := 1 + 2*L*K
	d.up = growTo(d.up, n)
	clear(d.up)
	p := &d.plan
	for l := range m.layers {
		if m.layers[l].dev == nil {
			continue
		}
		p.reset(1, E, K)
		err := s.Routes.Choose(l, s.pos, p.idx, p.wts)
		if err == nil {
			err = checkPicks(p.idx, s.pos, E)
		}
		if err == nil {
			p.group(K) // ascending id, the order of the host path's sums
			if len(p.ids) != K {
				err = fmt.Errorf("route source: position %d: an expert picked twice (%v)", s.pos, p.idx)
			}
		}
		if err != nil {
			r.do(inLayer(l, err))
			return
		}
		for j := range K {
			d.up[1+l*K+j] = float32(p.ids[j])
			d.up[1+(L+l)*K+j] = p.w[j]
		}
	}
	r.do(m.be.Write(r.view(s.sc.dev, 0, n), d.up))
}

// moeDevice is moe for a device-routed layer: its ops take no host data
// that changes between steps, so a graph may hold them. shared: the shared
// expert runs as the batch's job K (devShared), not in the fixed ops.
func (s *Session) moeDevice(r *run, l int, L *layer, xn, h backend.Buffer, shared bool) {
	s.routeIndexed(r, l, L, xn, r.view(s.sc.dev, 0, 1), shared)
	s.combineIndexed(r, l, L, h, shared)
}

// devShared reports whether layer l's shared expert runs as job K of its
// device-routed batch (backend.SharedIndexer), registering it at the
// layer's first device-routed step (outside any graph: the registration
// uploads). Then the step's fixed ops leave the shared expert out
// (moeRouter), ExpertsIndexedShared computes it as row K of the experts'
// output, and the combine takes that row: the same values in the same
// sums, three launches fewer a layer.
func (s *Session) devShared(l int, L *layer) bool {
	if L.devShared == 0 {
		L.devShared = -1
		si, ok := s.m.be.(backend.SharedIndexer)
		if ok && !sharedOff && L.shGate != nil && L.shUp != nil && L.shDown != nil {
			if ok, err := si.IndexShared(l, L.shGate, L.shUp, L.shDown); err == nil && ok {
				L.devShared = 1
			}
		}
	}
	return L.devShared == 1
}

// sharedOff keeps the shared expert out of the device-routed batch (tests
// compare the two).
var sharedOff = false

// devViews are layer l's K ids and K weights in the device-routing buffer.
func (s *Session) devViews(r *run, l int) (ids, w backend.Buffer) {
	K := s.m.K
	return r.view(s.sc.dev, 1+l*K, K), r.view(s.sc.dev, 1+(len(s.m.layers)+l)*K, K)
}

// routeIndexed queues layer l's top-K on the device (a NaN logit marks the
// step's status word) and the experts it picks from the tier into their
// rows (an expert not held marks missed and leaves its row zero), and with
// shared the layer's shared expert into row K.
func (s *Session) routeIndexed(r *run, l int, L *layer, xn, missed backend.Buffer, shared bool) {
	s.routeTopK(r, l, L)
	s.expertsIndexed(r, l, xn, missed, shared)
}

// routeTopK queues layer l's top-K on the device into its ids and weights
// (with the picks uploaded, into a scratch: devTable).
func (s *Session) routeTopK(r *run, l int, L *layer) {
	m := s.m
	K, E := m.K, m.Config.NumExperts
	ids, w := s.devViews(r, l)
	status := r.view(s.sc.dev, 0, 1)
	if s.dev.table {
		at := devAt(m, devScratch)
		ids, w = r.view(s.sc.dev, at, K), r.view(s.sc.dev, at+K, K)
	}
	if r.err != nil {
		return
	}
	r.do(m.be.(backend.DeviceRouter).RouteTopK(ids, w, status, r.view(s.sc.router, 0, E), 1, E, K, L.dev.renorm))
	s.lap(PhaseRouting)
}

// expertsIndexed queues the experts layer l's ids name from the tier into
// their rows (an expert not held marks missed and leaves its row zero), and
// with shared the shared expert as row K.
func (s *Session) expertsIndexed(r *run, l int, xn, missed backend.Buffer, shared bool) {
	m := s.m
	H, I, K := m.Config.HiddenSize, m.Config.MoeIntermediateSize, m.K
	ids, _ := s.devViews(r, l)
	switch {
	case r.err != nil:
	case shared:
		n := K + 1
		r.do(m.be.(backend.SharedIndexer).ExpertsIndexedShared(r.view(s.sc.eo, 0, n*H), r.view(s.sc.eg, 0, n*I), r.view(s.sc.eu, 0, n*I), xn, ids, missed, l, K))
	default:
		r.do(m.be.(backend.IndexedExperts).ExpertsIndexed(r.view(s.sc.eo, 0, K*H), r.view(s.sc.eg, 0, K*I), r.view(s.sc.eu, 0, K*I), xn, ids, missed, l, K))
	}
	s.lap(PhaseExpertCompute)
}

// combineIndexed adds layer l's expert rows, weighted by the device's
// weights, and its shared expert to h: eo's row K with shared, else the
// fixed ops' output.
func (s *Session) combineIndexed(r *run, l int, L *layer, h backend.Buffer, shared bool) {
	K, H := s.m.K, s.m.Config.HiddenSize
	_, w := s.devViews(r, l)
	sd, gt := s.sharedOut(r, L)
	if shared {
		sd = r.view(s.sc.eo, K*H, H) // row K: the shared expert (routeIndexed)
	}
	if r.err == nil {
		r.do(s.m.be.(backend.IndexedExperts).CombineTokenIndexed(h, r.view(s.sc.eo, 0, K*H), w, K, sd, gt))
	}
	s.lap(PhaseCombine)
}

// devID is expert id v as the device router wrote it for layer l,
// checked to be one of the E.
func devID(l int, v float32, E int) (int, error) {
	if v < 0 || v >= float32(E) || v != float32(math.Trunc(float64(v))) {
		return 0, fmt.Errorf("layer %d: the device router wrote expert id %v, outside [0, %d)", l, v, E)
	}
	return int(v), nil
}

// devMark records that layer l ran on the device in this step.
func (s *Session) devMark(l int) {
	s.dev.used[l] = true
	s.dev.any = true
}

// devEnd reads the step's device routing back (after the logits: the
// stream is drained by then) and counts it as the host path counts its
// own. A nonzero status is the step's error: a NaN router logit (1), or an
// expert the cache no longer held when its kernel ran (2, a bug).
func (s *Session) devEnd(r *run) {
	d := &s.dev
	if !d.any || r.err != nil {
		return
	}
	m := s.m
	K := m.K
	n := 1 + len(m.layers)*K
	if cap(d.host) < n {
		d.host = make([]float32, n)
	}
	d.host = d.host[:n]
	if r.do(m.be.Read(d.host, r.view(s.sc.dev, 0, n))); r.err != nil {
		return
	}
	switch st := d.host[0]; st {
	case 0:
	case 1:
		r.do(fmt.Errorf("a router logit is NaN (routed on the device)"))
		return
	default:
		r.do(fmt.Errorf("device routing status %v: an expert was not in the cache when its kernel ran", st))
		return
	}
	s.plan.idx = growTo(s.plan.idx, K)
	idx := s.plan.idx[:K]
	for l, used := range d.used {
		if !used {
			continue
		}
		for j, v := range d.host[1+l*K : 1+(l+1)*K] {
			id, err := devID(l, v, m.Config.NumExperts)
			if r.do(err); r.err != nil {
				return
			}
			idx[j] = id
		}
		m.countPicks(l, idx)
		m.stats.DevLayers++
		m.stats.Uses += int64(K)
		m.stats.GPUHits += int64(K)
		if tp := s.tm.p; tp != nil {
			tp.ExpertUses += int64(K)
			tp.GPUHits += int64(K)
			tp.DevLayers++
			tp.MoELayers++
		}
	}
}
