package model

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// aheadSource chooses K distinct experts a layer and position, not in
// ascending order, with unequal weights: a stand-in for a routing trace
// whose picks are not the model's router's.
type aheadSource struct{ E, K int }

func (a aheadSource) Choose(l, pos int, idx []int, w []float32) error {
	K := len(idx)
	start := (l*131 + pos*977) % a.E
	sum := float32(0)
	for j := range idx {
		idx[K-1-j] = (start + j*(2*(a.E/K)+1)) % a.E // odd stride, distinct picks, descending runs
		w[j] = float32(j + 1)
		sum += w[j]
	}
	for j := range w {
		w[j] /= sum
	}
	return nil
}

// TestDeviceRoutedTable: with a route source that chooses ahead
// (Session.RoutesAhead), one-token steps route on the device with the
// source's picks uploaded at the step's start (devTable), every expert
// held and half of them (devMissOn: the host computes the misses after
// reading the ids back), through the layers' graphs; the logits are those
// of the host path with the same source, bit for bit on devTier. Without
// RoutesAhead the source keeps every layer on the host.
func TestDeviceRoutedTable(t *testing.T) {
	defer func(v, w, g bool) { devOff, devMissOn, graphsOff = v, w, g }(devOff, devMissOn, graphsOff)
	devOff, graphsOff = false, false
	for _, partial := range []bool{false, true} {
		devMissOn = partial
		run := func(ahead bool) ([][]float32, *devTier, *recorder) {
			d := &devTier{keepTier: newKeepTier(nil), evenOnly: partial}
			rec := &recorder{Backend: d.keepTier}
			m := open(t, "hf", 16, 0, Options{Backend: devRecorder{rec, d}})
			return tableSteps(t, m, aheadSource{E: m.Config.NumExperts, K: m.K}, ahead), d, rec
		}
		want, host, _ := run(false)
		if host.indexed != 0 {
			t.Fatalf("partly held %v: a source without RoutesAhead routed %d layers on the device", partial, host.indexed)
		}
		got, dev, rec := run(true)
		if dev.indexed == 0 || rec.records == 0 {
			t.Fatalf("partly held %v: %d device-routed layers, %d graph recordings: want the uploaded picks on the device, in graphs", partial, dev.indexed, rec.records)
		}
		for i := range want {
			if j := firstDiff(got[i], want[i]); j >= 0 {
				t.Fatalf("partly held %v: step %d: logit %d is %v with the picks on the device, %v on the host path", partial, i, j, got[i][j], want[i][j])
			}
		}
		if _, ok := testBackend(t).(backend.IndexedExperts); ok {
			tableOn(t, partial)
		}
	}
}

// tableOn is TestDeviceRoutedTable on a GPU (FMOE_TEST_BACKEND=cuda): its
// own tier holding every expert or half of them, preloaded; the logits
// within 1e-5 (relative) of the host path's with the same source.
func tableOn(t *testing.T, partial bool) {
	probe := open(t, "hf", 16, 0, Options{Backend: cpu.New(cpu.Options{Threads: 1})})
	// Every expert with room to spare (a device entry may round up), or half.
	budget := 2 * int64(probe.Config.NumHiddenLayers*probe.Config.NumExperts) * probe.experts.tierEntryBytes()
	if partial {
		budget /= 4
	}
	run := func(ahead bool) ([]float32, int64) {
		m := open(t, "hf", 16, 0, Options{Backend: testBackend(t), GPUCache: budget})
		steps := tableSteps(t, m, aheadSource{E: m.Config.NumExperts, K: m.K}, ahead)
		return slices.Concat(steps...), m.ExpertStats().DevLayers
	}
	want, hostDev := run(false)
	got, dev := run(true)
	if hostDev != 0 || dev == 0 {
		t.Fatalf("partly held %v on the GPU: %d layers routed on the device without RoutesAhead, %d with; want 0 and some", partial, hostDev, dev)
	}
	if worst := worstRowRel(got, want, probe.Config.VocabSize); worst > 1e-5 {
		t.Errorf("partly held %v on the GPU: the uploaded picks' logits differ from the host path's by %.3g (relative), want ≤ 1e-5", partial, worst)
	}
}

// tableSteps preloads m's tiers and runs a 3-token prompt (the host path
// either way) and 5 one-token steps with routes as the session's source,
// choosing ahead or not; it returns each step's logits.
func tableSteps(t *testing.T, m *Model, routes RouteSource, ahead bool) [][]float32 {
	t.Helper()
	s := preloadedSession(t, m)
	s.Routes, s.RoutesAhead = routes, ahead
	var out [][]float32
	lg, err := s.Forward([]int{3, 17, 29})
	for i := 0; err == nil && i < 5; i++ {
		out = append(out, lg)
		lg, err = s.Forward([]int{(i*7919 + 5) % m.Config.VocabSize})
	}
	if err != nil {
		t.Fatal(err)
	}
	return append(out, lg)
}

// preloadedSession preloads m's tiers and opens a session on it, closed
// when the test ends.
func preloadedSession(t *testing.T, m *Model) *Session {
	t.Helper()
	if _, err := m.Preload(context.Background(), PreloadOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// PrefetchExpert is backend.ExpertPrefetcher's where d.prefetch is set: the
// entry pending, out of what ExpertsIndexed and LayerCached see (as CUDA
// keeps a prefetch out of its device index), until a CachedExpert of it.
func (d *devTier) PrefetchExpert(l, id int, ws []backend.Weight) (int, bool, error) {
	k := [2]int{l, id}
	if !d.prefetch || d.held[k] != nil || d.pending[k] != nil {
		return 0, false, nil
	}
	if d.pending == nil {
		d.pending = map[[2]int][]backend.Weight{}
	}
	cp := make([]backend.Weight, len(ws))
	for i, w := range ws {
		w.Data, w.Scales, w.Biases = bytes.Clone(w.Data), bytes.Clone(w.Scales), bytes.Clone(w.Biases)
		cp[i] = w
	}
	d.pending[k] = cp
	d.prefetched++
	d.events = append(d.events, [2]int{1, l})
	return d.prefetched, true, nil
}

func (d *devTier) PrefetchDone(int, bool) (bool, error) { return true, nil }

// LinkIdle reports the link idle at every fourth call (backend.LinkPacer,
// for Options.PrefetchPace): a paced step issues some predictions while
// its ids are on their way and leaves others queued past them, to be
// dropped (with every other call the queue drained before most ids did).
func (d *devTier) LinkIdle() (bool, error) {
	d.idleAsks++
	return d.idleAsks%4 == 0, nil
}

// ReadReady reports the outstanding ReadAsync's values landed at every
// third call, so that a paced wait pumps a while first.
func (d *devTier) ReadReady() (bool, error) {
	if !d.waiting {
		return false, bytesErr("devTier: ReadReady without an outstanding ReadAsync")
	}
	d.readyAsks++
	return d.readyAsks%3 == 0, nil
}

func (d *devTier) PrefetchPending(l, id int) bool { return d.pending[[2]int{l, id}] != nil }

// CachedExpert settles a pending prefetch into the tier first.
func (d *devTier) CachedExpert(l, id int) ([]backend.Tensor, bool) {
	k := [2]int{l, id}
	if ws := d.pending[k]; ws != nil {
		delete(d.pending, k)
		d.held[k] = ws
	}
	return d.keepTier.CachedExpert(l, id)
}

// SettleLanded is backend.PrefetchSettler's: the stand-in's copies end at
// once, so every pending prefetch settles.
func (d *devTier) SettleLanded(l, id int) (bool, error) {
	k := [2]int{l, id}
	ws := d.pending[k]
	if ws == nil {
		return false, nil
	}
	delete(d.pending, k)
	d.held[k] = ws
	d.settled++
	return true, nil
}

func (r devRecorder) SettleLanded(l, id int) (bool, error) { return r.d.SettleLanded(l, id) }

// TouchExpert is backend.ExpertToucher's: a settled entry of the tier.
func (d *devTier) TouchExpert(l, id int) bool {
	d.touched++
	k := [2]int{l, id}
	return d.pending[k] == nil && d.held[k] != nil
}

func (r devRecorder) TouchExpert(l, id int) bool { return r.d.TouchExpert(l, id) }

func (r devRecorder) PrefetchExpert(l, id int, ws []backend.Weight) (int, bool, error) {
	return r.d.PrefetchExpert(l, id, ws)
}
func (r devRecorder) PrefetchDone(tok int, wait bool) (bool, error) {
	return r.d.PrefetchDone(tok, wait)
}
func (r devRecorder) PrefetchPending(l, id int) bool { return r.d.PrefetchPending(l, id) }

// aheadPredictor is aheadSource predicting the next layer's picks, and
// besides them its picks at the next position: prefetches that the step
// does not use and a later one may, after they have waited unsettled.
type aheadPredictor struct{ aheadSource }

func (a aheadPredictor) Predict(l, pos int, dst []int) []int {
	idx, w := make([]int, a.K), make([]float32, a.K)
	a.Choose(l, pos, idx, w)
	dst = append(dst, idx...)
	a.Choose(l, pos+1, idx, w)
	return append(dst, idx...)
}

// TestDeviceTablePrefetch: the uploaded picks with half the experts held
// (devMissOn) and the next layer's picks prefetched from the host tier: a
// prefetch whose copy has ended is settled into the device's index before
// the layer's held experts are queued (settleLanded; the stand-in's copies
// end at once), and with settleOff one is out of the index when the
// layer's kernels run, so its row is computed by the host after the ids
// come back (devpartial.go's late hits); the logits are the host path's
// bit for bit either way, over two sessions in turn on one model's tiers.
func TestDeviceTablePrefetch(t *testing.T) {
	defer func(v, w, g, so bool) { devOff, devMissOn, graphsOff, settleOff = v, w, g, so }(devOff, devMissOn, graphsOff, settleOff)
	devOff, devMissOn, graphsOff = false, true, false
	run := func(ahead bool) ([][]float32, *devTier, ExpertStats) {
		d := &devTier{keepTier: newKeepTier(nil), evenOnly: true, prefetch: true}
		all := hostAll(t)
		m := open(t, "hf", 16, 0, Options{Backend: devRecorder{&recorder{Backend: d.keepTier}, d}, HostCache: all, Prefetch: true})
		if err := m.PrefetchCheck(); err != nil {
			t.Fatal(err)
		}
		// Two sessions in turn, on one model's tiers.
		src := aheadPredictor{aheadSource{E: m.Config.NumExperts, K: m.K}}
		out := tableSteps(t, m, src, ahead)
		return append(out, tableSteps(t, m, src, ahead)...), d, m.ExpertStats()
	}
	want, _, _ := run(false)
	got, d, st := run(true)
	if d.indexed == 0 || d.prefetched == 0 || st.PrefetchUsed == 0 || d.settled == 0 {
		t.Fatalf("%d device-routed layers, %d prefetches, %d used, %d settled ahead: want all four", d.indexed, d.prefetched, st.PrefetchUsed, d.settled)
	}
	// And with the landed prefetches left pending to their first use
	// (settleOff): computed by the host after the ids, as late hits.
	settleOff = true
	late, ld, lst := run(true)
	settleOff = false
	if ld.settled != 0 || lst.PrefetchUsed == 0 {
		t.Fatalf("settleOff: %d settled ahead, %d prefetches used: want none and some", ld.settled, lst.PrefetchUsed)
	}
	for i := range want {
		if j := firstDiff(got[i], want[i]); j >= 0 {
			t.Fatalf("step %d: logit %d is %v with prefetches and the picks on the device, %v on the host path", i, j, got[i][j], want[i][j])
		}
		if j := firstDiff(late[i], want[i]); j >= 0 {
			t.Fatalf("step %d, settleOff: logit %d is %v, %v on the host path", i, j, late[i][j], want[i][j])
		}
	}
	if _, ok := testBackend(t).(backend.IndexedExperts); ok {
		tablePrefetchOn(t)
	}
}

// tablePrefetchOn is TestDeviceTablePrefetch on a GPU (FMOE_TEST_BACKEND=cuda;
// with FMOE_CUDA_PF_STREAM=1 the prefetches on their own copy stream).
func tablePrefetchOn(t *testing.T) {
	prefetchOnGPU(t, "prefetches with the picks uploaded", false, func(m *Model, ahead bool) []float32 {
		src := aheadPredictor{aheadSource{E: m.Config.NumExperts, K: m.K}}
		steps := tableSteps(t, m, src, ahead)
		return slices.Concat(append(steps, tableSteps(t, m, src, ahead)...)...)
	})
}

// prefetchOnGPU opens the tiny model on the GPU twice with a GPU tier for
// about half of the experts, the host tier for all and Prefetch, and runs
// steps(m, false), the host path's reference, and steps(m, true): the
// latter's logits within 1e-5 (relative) of the reference's, some layers
// routed on the device, some prefetches used; with pace, both paced
// (Options.PrefetchPace, two layers ahead).
func prefetchOnGPU(t *testing.T, what string, pace bool, steps func(m *Model, variant bool) []float32) {
	probe := open(t, "hf", 16, 0, Options{Backend: cpu.New(cpu.Options{Threads: 1})})
	n := int64(probe.Config.NumHiddenLayers * probe.Config.NumExperts)
	run := func(v bool) ([]float32, ExpertStats) {
		m := open(t, "hf", 16, 0, Options{Backend: testBackend(t), GPUCache: n * probe.experts.tierEntryBytes() / 2, HostCache: n * probe.experts.set.Stride, Prefetch: true, PrefetchPace: map[bool]int{false: 0, true: 1}[pace], PrefetchAhead: map[bool]int{false: 1, true: 2}[pace]})
		return steps(m, v), m.ExpertStats()
	}
	want, _ := run(false)
	got, st := run(true)
	if st.DevLayers == 0 || st.Prefetched == 0 || st.PrefetchUsed == 0 {
		t.Fatalf("%s on the GPU: %d layers routed on the device, %d prefetches, %d used: want all three", what, st.DevLayers, st.Prefetched, st.PrefetchUsed)
	}
	if worst := worstRowRel(got, want, probe.Config.VocabSize); worst > 1e-5 {
		t.Errorf("%s on the GPU: the logits differ from the host path's by %.3g (relative), want ≤ 1e-5", what, worst)
	}
}

// evenPicks is aheadSource over the even experts, predicting for each pick
// the odd expert after it: with evenOnly every layer is partly held and
// none misses, and every prediction is a prefetch the step does not use.
type evenPicks struct{ aheadSource }

func (e evenPicks) Choose(l, pos int, idx []int, w []float32) error {
	if err := (aheadSource{E: e.E / 2, K: e.K}).Choose(l, pos, idx, w); err != nil {
		return err
	}
	for j := range idx {
		idx[j] *= 2
	}
	return nil
}

func (e evenPicks) Predict(l, pos int, dst []int) []int {
	idx, w := make([]int, e.K), make([]float32, e.K)
	e.Choose(l, pos, idx, w)
	for _, id := range idx {
		dst = append(dst, id+1)
	}
	return dst
}

// TestPrefetchAfterNextGraph: a partly held layer whose picks were all
// held puts its prefetches off until the next layer's graph (which ends
// with its top-K) is queued (prefetchLater), so that they follow it; with
// prefetchNow they come before it, in the layer's tail, after its held
// experts. The logits are the same bits either way.
func TestPrefetchAfterNextGraph(t *testing.T) {
	defer func(v, w, g, n bool) { devOff, devMissOn, graphsOff, prefetchNow = v, w, g, n }(devOff, devMissOn, graphsOff, prefetchNow)
	devOff, devMissOn, graphsOff = false, true, false
	run := func(now bool) ([][]float32, *devTier) {
		prefetchNow = now
		d := &devTier{keepTier: newKeepTier(nil), evenOnly: true, prefetch: true}
		all := hostAll(t)
		m := open(t, "hf", 16, 0, Options{Backend: devRecorder{&recorder{Backend: d.keepTier}, d}, HostCache: all, Prefetch: true})
		return tableSteps(t, m, evenPicks{aheadSource{E: m.Config.NumExperts, K: m.K}}, true), d
	}
	// afterGraph counts the prefetches queued right after a layer's graph
	// (the last other event a top-K), of all the prefetches.
	afterGraph := func(d *devTier) (n, of int) {
		last := -1 // the kind of the last event other than a prefetch
		for _, e := range d.events {
			switch {
			case e[0] != 1:
				last = e[0]
			case last == 2:
				n, of = n+1, of+1
			default:
				of++
			}
		}
		return n, of
	}
	want, tail := run(true)
	got, later := run(false)
	for i := range want {
		if j := firstDiff(got[i], want[i]); j >= 0 {
			t.Fatalf("step %d: logit %d is %v with the prefetches put off, %v in the tail", i, j, got[i][j], want[i][j])
		}
	}
	nl, ofl := afterGraph(later)
	nt, oft := afterGraph(tail)
	t.Logf("prefetches right after a layer's graph: put off %d of %d, in the tail %d of %d", nl, ofl, nt, oft)
	if ofl == 0 || nl != ofl {
		t.Errorf("put off: %d of %d prefetches right after the next layer's graph, want all (and some)", nl, ofl)
	}
	if oft == 0 || nt != 0 {
		t.Errorf("prefetchNow: %d of %d prefetches right after a layer's graph, want none", nt, oft)
	}
}

// badLater is aheadSource that, from position 3, names as its first pick
// pick(ids) instead: an expert out of range, or one picked already.
type badLater struct {
	aheadSource
	pick func(idx []int) int
}

func (b badLater) Choose(l, pos int, idx []int, w []float32) error {
	b.aheadSource.Choose(l, pos, idx, w)
	if pos >= 3 {
		idx[0] = b.pick(idx)
	}
	return nil
}

// TestDeviceTableBadSource: an uploaded pick outside the experts, or an
// expert picked twice, is the step's error, naming the layer, the position
// and the picks.
func TestDeviceTableBadSource(t *testing.T) {
	defer func(v bool) { devOff = v }(devOff)
	devOff = false
	probe := open(t, "hf", 16, 0, Options{})
	E := probe.Config.NumExperts
	for _, c := range []struct {
		pick func(idx []int) int
		want string
	}{
		{func([]int) int { return E + 1 }, fmt.Sprintf("position 3: expert %d outside [0, %d)", E+1, E)},
		{func(idx []int) int { return idx[1] }, "position 3: an expert picked twice"},
	} {
		d := &devTier{keepTier: newKeepTier(nil)}
		m := open(t, "hf", 16, 0, Options{Backend: d})
		s := preloadedSession(t, m)
		s.Routes, s.RoutesAhead = badLater{aheadSource{E: E, K: m.K}, c.pick}, true
		if _, err := s.Forward([]int{3, 17, 29}); err != nil {
			t.Fatal(err)
		}
		_, err := s.Forward([]int{5})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "layer 0") {
			t.Fatalf("a bad pick: %v, want an error naming layer 0 and %q", err, c.want)
		}
		if d.indexed != 0 {
			t.Fatalf("%d layers ran on the device after a bad upload", d.indexed)
		}
	}
}

// TestDevicePartialOwnPrediction: with Options.Prefetch and no route
// source that predicts, a partly held layer routed on the device also
// takes the top-K of the logits its router input predicts for the next
// layer, read back with its ids (moePartialRoute, predictedIDs), and the
// step prefetches them as the host path does from its logits: some
// prefetches used, the logits the host path's bit for bit, every
// partly held layer on the device.
func TestDevicePartialOwnPrediction(t *testing.T) {
	defer func(v, w bool) { devOff, devMissOn = v, w }(devOff, devMissOn)
	devOff = false
	pace := 0
	run := func(dev bool) ([][]float32, *devTier, ExpertStats, *Model) {
		devMissOn = dev
		d := &devTier{keepTier: newKeepTier(nil), evenOnly: true, prefetch: true}
		all := hostAll(t)
		var be backend.Backend = devRecorder{&recorder{Backend: d.keepTier}, d}
		if pace > 0 {
			be = d // unrecorded: an AsyncReader, whose wait for the ids the pace pumps in
		}
		m := open(t, "hf", 16, 0, Options{Backend: be, HostCache: all, Prefetch: true, PrefetchAhead: 2, PrefetchPace: pace})
		return forwardSteps(t, preloadedSession(t, m), 5), d, m.ExpertStats(), m
	}
	want, _, hostSt, _ := run(false)
	got, d, st, m := run(true)
	layers, predicting := 0, 0
	for l := range m.layers {
		if m.layers[l].dev != nil {
			layers++
			if m.layers[l].predict != nil {
				predicting++
			}
		}
	}
	// A predicting layer runs two top-Ks: its own and the prediction's.
	if st.DevLayers != int64(5*layers) || d.routed != 5*(layers+predicting) || predicting == 0 {
		t.Fatalf("%d layers routed on the device over 5 steps with %d top-Ks: want %d and %d", st.DevLayers, d.routed, 5*layers, 5*(layers+predicting))
	}
	if st.Prefetched == 0 || st.PrefetchUsed == 0 || hostSt.PrefetchUsed == 0 {
		t.Fatalf("%d prefetches, %d used (the host path: %d used): want all three", st.Prefetched, st.PrefetchUsed, hostSt.PrefetchUsed)
	}
	// Paced (Options.PrefetchPace, two layers ahead): the predictions
	// issued as the fake link goes idle, some while the ids are on their way.
	pace = 1
	paced, pd, pst, _ := run(true)
	pace = 0
	if pd.idleAsks == 0 || pd.readyAsks == 0 || pst.PrefetchUsed == 0 {
		t.Fatalf("paced: the link asked %d times, the read %d; %d of %d prefetches used: want some of each",
			pd.idleAsks, pd.readyAsks, pst.PrefetchUsed, pst.Prefetched)
	}
	// No prediction for a layer is issued once its ids are back (they are
	// dropped then), and some are issued while ids are on their way.
	l, back, inWait := -1, false, 0
	for _, e := range pd.events {
		switch e[0] {
		case 0:
			l, back = e[1], false
		case 3:
			back = true
		case 1:
			if back && e[1] <= l {
				t.Fatalf("paced: a prefetch for layer %d issued after layer %d's ids returned", e[1], l)
			}
			if !back && l >= 0 {
				inWait++
			}
		}
	}
	if inWait == 0 {
		t.Fatalf("paced: no prefetch issued while a layer's ids were on their way")
	}
	for i := range want {
		if j := firstDiff(got[i], want[i]); j >= 0 {
			t.Fatalf("step %d: logit %d is %v with the prediction on the device, %v on the host path", i, j, got[i][j], want[i][j])
		}
		if j := firstDiff(paced[i], want[i]); j >= 0 {
			t.Fatalf("step %d, paced: logit %d is %v, %v on the host path", i, j, paced[i][j], want[i][j])
		}
	}
	if _, ok := testBackend(t).(backend.IndexedExperts); ok {
		ownPredictionOn(t, false)
		ownPredictionOn(t, true)
	}
}

// ownPredictionOn is TestDevicePartialOwnPrediction on a GPU
// (FMOE_TEST_BACKEND=cuda).
func ownPredictionOn(t *testing.T, pace bool) {
	what := "the prediction on the device"
	if pace {
		what += ", paced"
	}
	prefetchOnGPU(t, what, pace, func(m *Model, dev bool) []float32 {
		devMissOn = dev
		return slices.Concat(forwardSteps(t, preloadedSession(t, m), 5)...)
	})
}

// forwardSteps runs n one-token steps on s and returns their logits.
func forwardSteps(t *testing.T, s *Session, n int) [][]float32 {
	t.Helper()
	var out [][]float32
	for i := range n {
		lg, err := s.Forward([]int{(i*7919 + 5) % s.m.Config.VocabSize})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, lg)
	}
	return out
}

// hostAll is a host tier's budget that holds every expert of the fixture
// the tests open ("hf", 16).
func hostAll(t *testing.T) int64 {
	t.Helper()
	probe := open(t, "hf", 16, 0, Options{})
	return int64(probe.Config.NumHiddenLayers*probe.Config.NumExperts) * probe.experts.set.Stride
}
