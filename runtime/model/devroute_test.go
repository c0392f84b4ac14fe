package model

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// devTier is keepTier with the device-routing ops done on the host, so
// that the model's device-routed path (devroute.go) is tested without a
// GPU: RouteTopK by backend.Route (or the plain softmax), ExpertsIndexed
// from the tier's copies, CombineTokenIndexed by the separate ops in the
// router's order. What it reads from its buffers it reads when called, as
// a kernel reads when it runs.
type devTier struct {
	*keepTier
	E       int
	routed  int // RouteTopK calls
	indexed int // ExpertsIndexed calls
	nan     bool
	// evenOnly keeps only the even experts in the tier: every layer is
	// then partly held, and each odd expert a step routes to is a miss,
	// read and bound anew (devpartial.go).
	evenOnly bool
	// The shared experts registered (IndexShared) and the steps that ran
	// one as row K (ExpertsIndexedShared); noShared hides the interface.
	shared   map[int][3]backend.Tensor
	sharedN  int
	noShared bool
	// prefetch makes it an ExpertPrefetcher (devtable_test.go): pending
	// entries, prefetched the count of them.
	prefetch   bool
	pending    map[[2]int][]backend.Weight
	prefetched int
	// asyncN counts ReadAsync calls; waiting is true between one and its wait.
	asyncN  int
	waiting bool
	// idleAsks and readyAsks count LinkIdle and ReadReady calls.
	idleAsks, readyAsks int
	// touched counts TouchExpert calls, settled the prefetches
	// SettleLanded settled.
	touched, settled int
	// events logs ExpertsIndexed (0, layer), admitted prefetches (1,
	// layer), RouteTopK (2, -1: a layer's graph) and the return of a
	// ReadAsync's wait (3, -1) in the order they happened.
	events [][2]int
}

// ReadAsync is backend.AsyncReader's: the values src holds now (the ops
// before have run), given to dst only by wait, and dst NaN until then, so
// that a caller reading it early finds no expert id there.
func (d *devTier) ReadAsync(dst []float32, src backend.Buffer) (func() error, error) {
	if d.waiting {
		return nil, errors.New("devTier: async read while another is outstanding")
	}
	v := make([]float32, len(dst))
	if err := d.Read(v, src); err != nil {
		return nil, err
	}
	for i := range dst {
		dst[i] = float32(math.NaN())
	}
	d.asyncN++
	d.waiting = true
	return func() error {
		if !d.waiting {
			return errors.New("devTier: async read waited for twice")
		}
		d.waiting = false
		d.events = append(d.events, [2]int{3, -1})
		copy(dst, v)
		return nil
	}, nil
}

// IndexShared is backend.SharedIndexer's: taken where the three tensors
// have the layer's routed experts' shapes and format, as CUDA's is.
func (d *devTier) IndexShared(l int, gate, up, down backend.Tensor) (bool, error) {
	if d.noShared {
		return false, nil
	}
	for k, ws := range d.held {
		if k[0] != l {
			continue
		}
		for i, t := range []backend.Tensor{gate, up, down} {
			if t.Rows() != ws[i].Rows || t.Cols() != ws[i].Cols || t.Format() != ws[i].Format {
				return false, nil
			}
		}
		if d.shared == nil {
			d.shared = map[int][3]backend.Tensor{}
		}
		d.shared[l] = [3]backend.Tensor{gate, up, down}
		return true, nil
	}
	return false, nil
}

// ExpertsIndexedShared computes the K routed rows as ExpertsIndexed and
// row K from the registered shared expert by MatMul, SwiGLU and MatMul.
func (d *devTier) ExpertsIndexedShared(eo, g, u, x, ids, status backend.Buffer, l, K int) error {
	sh, ok := d.shared[l]
	if !ok {
		return errors.New("devTier: no shared expert registered")
	}
	d.sharedN++
	H, I := eo.Len()/(K+1), g.Len()/(K+1)
	view := func(b backend.Buffer, off, n int) backend.Buffer {
		v, _ := d.View(b, off, n)
		return v
	}
	if err := d.ExpertsIndexed(view(eo, 0, K*H), view(g, 0, K*I), view(u, 0, K*I), x, ids, status, l, K); err != nil {
		return err
	}
	gk, uk := view(g, K*I, I), view(u, K*I, I)
	return errors.Join(d.MatMul(gk, sh[0], x, 1), d.MatMul(uk, sh[1], x, 1), d.SwiGLU(gk, gk, uk),
		d.MatMul(view(eo, K*H, H), sh[2], gk, 1))
}

func (d *devTier) BindExpert(l, id int, ws []backend.Weight) ([]backend.Tensor, error) {
	ts, err := d.keepTier.BindExpert(l, id, ws)
	if d.evenOnly && id%2 == 1 {
		delete(d.held, [2]int{l, id})
	}
	return ts, err
}

func (d *devTier) RouteTopK(ids, w, status, logits backend.Buffer, T, E, K int, renorm bool) error {
	d.routed++
	d.events = append(d.events, [2]int{2, -1})
	lg := make([]float32, T*E)
	if err := d.Read(lg, logits); err != nil {
		return err
	}
	hi, hw := make([]float32, T*K), make([]float32, T*K)
	idx := make([]int, K)
	for t := range T {
		row := lg[t*E : (t+1)*E]
		if d.nan {
			row[0] = float32(math.NaN())
		}
		err := softmaxRoute(renorm)(row, idx, hw[t*K:(t+1)*K])
		if err != nil {
			if err := d.Write(status, []float32{1}); err != nil {
				return err
			}
			for j := range idx {
				idx[j] = j
			}
		}
		// In ascending id, as the contract has it, with their weights.
		ord := make([]int, K)
		for j := range ord {
			ord[j] = j
		}
		slices.SortFunc(ord, func(a, b int) int { return idx[a] - idx[b] })
		tw := slices.Clone(hw[t*K : (t+1)*K])
		for j, o := range ord {
			hi[t*K+j], hw[t*K+j] = float32(idx[o]), tw[o]
		}
	}
	if err := d.Write(ids, hi); err != nil {
		return err
	}
	return d.Write(w, hw)
}

func (d *devTier) LayerCached(l, E int) bool {
	n := 0
	for k := range d.held {
		if k[0] == l {
			n++
		}
	}
	return n == E
}

func (d *devTier) ExpertsIndexed(eo, g, u, x, ids, status backend.Buffer, l, K int) error {
	d.indexed++
	d.events = append(d.events, [2]int{0, l})
	hi := make([]float32, K)
	if err := d.Read(hi, ids); err != nil {
		return err
	}
	H, I := eo.Len()/K, g.Len()/K
	for i, v := range hi {
		view := func(b backend.Buffer, n int) backend.Buffer {
			vb, _ := d.View(b, i*n, n)
			return vb
		}
		ws, ok := d.held[[2]int{l, int(v)}]
		if !ok {
			// As the contract has it: the row zero, status 2, the rest computed.
			if err := errors.Join(d.Zero(view(eo, H)), d.Write(status, []float32{2})); err != nil {
				return err
			}
			continue
		}
		ts, err := d.bindAll(ws)
		if err != nil {
			return err
		}
		gi, ui := view(g, I), view(u, I)
		err = errors.Join(d.MatMul(gi, ts[0], x, 1), d.MatMul(ui, ts[1], x, 1), d.SwiGLU(gi, gi, ui),
			d.MatMul(view(eo, H), ts[2], gi, 1))
		for _, t := range ts {
			err = errors.Join(err, d.Release(t))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *devTier) CombineTokenIndexed(h, eo, w backend.Buffer, K int, sd, gate backend.Buffer) error {
	hw := make([]float32, K)
	if err := d.Read(hw, w); err != nil {
		return err
	}
	H := h.Len()
	acc, err := d.Alloc(H)
	if err != nil {
		return err
	}
	defer d.Free(acc)
	err = d.ScatterAdd(acc, eo, make([]int, K), hw, H)
	switch {
	case sd != nil && gate != nil:
		err = errors.Join(err, d.GatedAdd(acc, sd, gate, 1))
	case sd != nil:
		err = errors.Join(err, d.Add(acc, sd))
	}
	return errors.Join(err, d.Add(h, acc))
}

// TestGoldenDeviceRouted: with every expert in the tier, a decode step
// routes every layer on the device (no host read of the router's logits)
// and computes what the host path computes: the same sums in the same
// order, so the same bits where the weights are the host's (devTier), and
// within 1e-5 (relative) where a device computed them (within 2 ulps);
// each golden case also stays within the fixtures' tolerance. With FMOE_TEST_BACKEND=cuda the
// GPU's own tier and kernels run it, else devTier.
//
// Each case runs with the shared expert as job K of the routed batch
// (backend.SharedIndexer) and without (sharedOff): both the same bits as
// the host path on devTier.
func TestGoldenDeviceRouted(t *testing.T) {
	defer func(v, o bool) { devOff, sharedOff = v, o }(devOff, sharedOff)
	for _, off := range []bool{false, true} {
		sharedOff = off
		goldenDeviceRouted(t, off)
	}
}

func goldenDeviceRouted(t *testing.T, off bool) {
	for _, c := range cases {
		name := c.src + "/" + c.golden + "/shared-in-batch"
		if off {
			name = c.src + "/" + c.golden + "/shared-apart"
		}
		t.Run(name, func(t *testing.T) {
			g := readGolden(t, c.golden)
			devOff = true
			ref, _ := goldenRun(t, open(t, c.src, c.bits, c.k, Options{Backend: newKeepTier(testBackend(t))}), g)
			devOff = false
			tb := testBackend(t)
			var fake *devTier
			if _, ok := tb.(backend.IndexedExperts); !ok {
				fake = &devTier{keepTier: newKeepTier(tb)}
				tb = fake
			}
			m := open(t, c.src, c.bits, c.k, Options{Backend: tb})
			if _, err := m.Preload(context.Background(), PreloadOptions{}); err != nil {
				t.Fatal(err)
			}
			got, tm := goldenRun(t, m, g)
			V := m.Config.VocabSize
			worst := worstRowRel(got, ref, V)
			// devTier's weights are the host's own: the same bits. A
			// device's are within 2 ulps, which moves the logits by ~1e-7
			// relative; 1e-5 leaves room for the layers to amplify it.
			if i := firstDiff(got, ref); fake != nil && i >= 0 {
				t.Errorf("logit %d is %v routed on the device, %v on the host", i, got[i], ref[i])
			}
			if worst > 1e-5 {
				t.Errorf("device-routed logits differ from the host path's by %.3g (relative, worst position), want ≤ 1e-5", worst)
			}
			checkGoldenLogits(t, got, g, V)
			d := &tm.Decode
			moe := m.Config.NumHiddenLayers // every tiny layer is MoE
			if d.GPUHits != d.ExpertUses || d.ExpertUses != int64(d.Tokens)*int64(moe*m.K) {
				t.Errorf("decode: %d of %d experts counted as tier hits over %d tokens, want %d each", d.GPUHits, d.ExpertUses, d.Tokens, d.Tokens*moe*m.K)
			}
			if want := int64(d.Tokens * moe); d.DevLayers != want || d.MoELayers != want {
				t.Errorf("timing: %d of %d MoE layers routed on the device over %d tokens, want %d of %d", d.DevLayers, d.MoELayers, d.Tokens, want, want)
			}
			if fake != nil && fake.indexed != d.Tokens*moe {
				t.Errorf("%d device-routed layers over %d decode tokens, want %d", fake.indexed, d.Tokens, d.Tokens*moe)
			}
			if fake != nil && !off && m.Config.SharedExpertIntermediateSize > 0 && fake.sharedN != fake.indexed {
				t.Errorf("%d device-routed layers ran the shared expert in the batch, want %d", fake.sharedN, fake.indexed)
			}
			t.Logf("worst relative difference from the host path %.3g over %d positions", worst, len(ref)/V)
		})
	}
}

// worstRowRel is the largest relative difference between got's and ref's
// rows of V logits.
func worstRowRel(got, ref []float32, V int) float64 {
	worst := 0.0
	for p := 0; p < len(ref)/V; p++ {
		worst = max(worst, rel(got[p*V:(p+1)*V], ref[p*V:(p+1)*V]))
	}
	return worst
}

// checkGoldenLogits holds a golden run's rows (goldenRun's: the prompt's,
// then one per fed generated token) to the fixtures' tolerance.
func checkGoldenLogits(t *testing.T, got []float32, g *golden, V int) {
	t.Helper()
	want := append(append([]float32(nil), g.f32["logits"]...), g.f32["generated_logits"]...)
	nIn := len(g.i64["input_ids"])
	for p := 0; p < len(got)/V-1; p++ { // the last fed token's logits have no golden row
		w := p
		if p >= nIn {
			w = p + 1
		}
		if e := rel(got[p*V:(p+1)*V], want[w*V:(w+1)*V]); e > tolLogits {
			t.Fatalf("position %d: logits relative error %.3g > %g", p, e, tolLogits)
		}
	}
}

// TestDeviceRoutedFallback: the device path yields to the host path where
// the host must see the choice (a route log, a route source), while a
// layer is not wholly cached, and for a prompt; a NaN router logit found
// on the device is the step's error, as on the host.
func TestDeviceRoutedFallback(t *testing.T) {
	// The host path for a layer short of an expert: devMissOn would route
	// it on the device too (TestGoldenDevicePartial).
	defer func(v, p bool) { devOff, devMissOn = v, p }(devOff, devMissOn)
	devOff, devMissOn = false, false
	fake := &devTier{keepTier: newKeepTier(nil)}
	m := open(t, "hf", 16, 0, Options{Backend: fake})
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Cold: the prompt and the first decode steps bind experts on the
	// host path; a layer goes to the device once all of its are held.
	if _, err := s.ForwardAll([]int{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	if fake.routed != 0 {
		t.Fatalf("a prompt routed %d layers on the device", fake.routed)
	}
	if _, err := m.Preload(context.Background(), PreloadOptions{}); err != nil {
		t.Fatal(err)
	}
	s.RouteLog = sinkFunc(func(int, int, []int, []float32) {})
	if _, err := s.Forward([]int{5}); err != nil || fake.routed != 0 {
		t.Fatalf("with a route log: %d layers routed on the device (%v)", fake.routed, err)
	}
	s.RouteLog = nil
	if _, err := s.Forward([]int{6}); err != nil || fake.routed != m.Config.NumHiddenLayers {
		t.Fatalf("warm: %d layers routed on the device, want %d (%v)", fake.routed, m.Config.NumHiddenLayers, err)
	}
	delete(fake.held, [2]int{1, 0})
	before := fake.routed
	if _, err := s.Forward([]int{7}); err != nil || fake.routed-before != m.Config.NumHiddenLayers-1 {
		t.Fatalf("layer 1 short of an expert: %d layers routed on the device, want %d (%v)", fake.routed-before, m.Config.NumHiddenLayers-1, err)
	}
	fake.nan = true
	if _, err := s.Forward([]int{8}); err == nil {
		t.Fatal("a NaN router logit on the device: no error")
	}
}

type sinkFunc func(l, pos int, idx []int, w []float32)

func (f sinkFunc) Record(l, pos int, idx []int, w []float32) { f(l, pos, idx, w) }

// devRecorder records devTier's device-routing ops into the fake graphs
// like every other op, so that a device-routed layer's graph is tested.
type devRecorder struct {
	*recorder
	d *devTier
}

func (r devRecorder) RouteTopK(ids, w, status, logits backend.Buffer, T, E, K int, renorm bool) error {
	return r.op(func() error { return r.d.RouteTopK(ids, w, status, logits, T, E, K, renorm) })
}
func (r devRecorder) LayerCached(l, E int) bool { return r.d.LayerCached(l, E) }
func (r devRecorder) ExpertsIndexed(eo, g, u, x, ids, status backend.Buffer, l, K int) error {
	return r.op(func() error { return r.d.ExpertsIndexed(eo, g, u, x, ids, status, l, K) })
}
func (r devRecorder) CombineTokenIndexed(h, eo, w backend.Buffer, K int, sd, gate backend.Buffer) error {
	return r.op(func() error { return r.d.CombineTokenIndexed(h, eo, w, K, sd, gate) })
}
func (r devRecorder) IndexShared(l int, gate, up, down backend.Tensor) (bool, error) {
	return r.d.IndexShared(l, gate, up, down)
}
func (r devRecorder) ExpertsIndexedShared(eo, g, u, x, ids, status backend.Buffer, l, K int) error {
	return r.op(func() error { return r.d.ExpertsIndexedShared(eo, g, u, x, ids, status, l, K) })
}
func (r devRecorder) SetExpertCache(b int64, n int) error { return r.d.SetExpertCache(b, n) }
func (r devRecorder) DeviceMemory() (int64, int64, error) { return r.d.DeviceMemory() }
func (r devRecorder) DropExpert(l, id int) error          { return r.d.DropExpert(l, id) }
func (r devRecorder) LinkIdle() (bool, error)             { return r.d.LinkIdle() }
func (r devRecorder) ReadReady() (bool, error)            { return r.d.ReadReady() }
func (r devRecorder) CachedExpert(l, id int) ([]backend.Tensor, bool) {
	return r.d.CachedExpert(l, id)
}
func (r devRecorder) BindExpert(l, id int, ws []backend.Weight) ([]backend.Tensor, error) {
	return r.d.BindExpert(l, id, ws)
}

// TestGraphDeviceRouted: decoding with every expert cached, a layer's
// graph holds its device-routed MoE block (a GatedDeltaNet layer is then
// one replay) and computes what the same ops run one by one compute, bit
// for bit.
func TestGraphDeviceRouted(t *testing.T) {
	for _, partial := range []bool{false, true} {
		graphDeviceRouted(t, partial)
	}
}

// graphDeviceRouted is TestGraphDeviceRouted with every expert held, or
// (partial) half of them, the layers then routed on the device with the
// host computing the misses after the graph (devpartial.go).
func graphDeviceRouted(t *testing.T, partial bool) {
	defer func(v, g, p bool) { devOff, graphsOff, devMissOn = v, g, p }(devOff, graphsOff, devMissOn)
	devOff, devMissOn = false, partial
	run := func(graphs bool) ([][]float32, *devTier, *recorder) {
		graphsOff = !graphs
		d := &devTier{keepTier: newKeepTier(nil), evenOnly: partial}
		rec := &recorder{Backend: d.keepTier}
		m := open(t, "hf", 16, 0, Options{Backend: devRecorder{rec, d}})
		s := preloadedSession(t, m)
		var out [][]float32
		for i := range 6 {
			lg, err := s.Forward([]int{(i*7919 + 5) % m.Config.VocabSize})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, lg)
		}
		return out, d, rec
	}
	want, d0, _ := run(false)
	got, d1, rec := run(true)
	if d0.indexed == 0 || d1.indexed != d0.indexed || rec.records == 0 {
		t.Fatalf("partly held %v: device-routed layers: %d without graphs, %d with (%d recordings); want the same, > 0", partial, d0.indexed, d1.indexed, rec.records)
	}
	for i := range want {
		if j := firstDiff(got[i], want[i]); j >= 0 {
			t.Fatalf("partly held %v: step %d: logit %d is %v through graphs, %v without", partial, i, j, got[i][j], want[i][j])
		}
	}
}

// TestGoldenDevicePartial: with the tier holding half of each layer's
// experts, a decode step routes every layer on the device anyway
// (devMissOn): the top-K and the held experts there, the misses computed
// by the host into their rows after one read of the ids, the combine with
// the device's weights. Its logits are the host path's bit for bit (the
// fake's weights are the host's), and the fixtures' within tolerance.
func TestGoldenDevicePartial(t *testing.T) {
	defer func(v, w, p, o bool) { devOff, devMissOn, partSerial, touchOff = v, w, p, o }(devOff, devMissOn, partSerial, touchOff)
	devOff = false
	g := readGolden(t, "bf16")
	run := func(partial bool) ([]float32, *Timing, *devTier, *Model) {
		devMissOn = partial
		fake := &devTier{keepTier: newKeepTier(nil), evenOnly: true}
		m := open(t, "hf", 16, 0, Options{Backend: fake})
		if _, err := m.Preload(context.Background(), PreloadOptions{}); err != nil {
			t.Fatal(err)
		}
		got, tm := goldenRun(t, m, g)
		return got, tm, fake, m
	}
	ref, _, hostFake, _ := run(false)
	if hostFake.routed != 0 {
		t.Fatalf("without devMissOn %d partly held layers routed on the device", hostFake.routed)
	}
	got, tm, fake, m := run(true)
	if i := firstDiff(got, ref); i >= 0 {
		t.Fatalf("logit %d is %v routed on the device with host misses, %v on the host path", i, got[i], ref[i])
	}
	// The picks probed with CachedExpert and Releases instead of
	// TouchExpert: the same logits and the same hits.
	touchOff = true
	probed, ptm, probeFake, _ := run(true)
	touchOff = false
	if i := firstDiff(probed, got); i >= 0 || ptm.Decode.GPUHits != tm.Decode.GPUHits {
		t.Fatalf("probed by CachedExpert: logit %d differs, or %d hits against TouchExpert's %d", i, ptm.Decode.GPUHits, tm.Decode.GPUHits)
	}
	if fake.touched == 0 || probeFake.touched != 0 {
		t.Fatalf("%d TouchExpert calls (want some), %d with touchOff (want none)", fake.touched, probeFake.touched)
	}
	partSerial = true
	serial, _, serialFake, _ := run(true)
	partSerial = false
	if i := firstDiff(serial, ref); i >= 0 || serialFake.asyncN != 0 {
		t.Fatalf("serial (partSerial): logit %d differs from the host path's, or %d ids read asynchronously (want none)", i, serialFake.asyncN)
	}
	if _, ok := testBackend(t).(backend.IndexedExperts); ok {
		devicePartialOn(t, g)
	}
	checkGoldenLogits(t, got, g, m.Config.VocabSize)
	d := &tm.Decode
	want := int64(d.Tokens * m.Config.NumHiddenLayers)
	if d.DevLayers != want || int64(fake.indexed) != want || int64(fake.asyncN) != want {
		t.Errorf("decode: %d layers routed on the device (%d indexed launches, %d ids read asynchronously), want %d", d.DevLayers, fake.indexed, fake.asyncN, want)
	}
	if d.GPUHits == 0 || d.GPUHits >= d.ExpertUses || d.ExpertUses != want*int64(m.K) {
		t.Errorf("decode: %d tier hits of %d expert uses over %d layers: want some misses and K uses a layer", d.GPUHits, d.ExpertUses, want)
	}
}

// devicePartialOn is TestGoldenDevicePartial on a GPU (FMOE_TEST_BACKEND=cuda):
// its own tier with room for half of the experts, preloaded, its kernels
// zeroing the misses' rows; the logits within 1e-5 of the host path's
// (the device's weights are within 2 ulps) and the fixtures' tolerance.
func devicePartialOn(t *testing.T, g *golden) {
	probe := open(t, "hf", 16, 0, Options{Backend: cpu.New(cpu.Options{Threads: 1})})
	budget := int64(probe.Config.NumHiddenLayers*probe.Config.NumExperts/2) * probe.experts.tierEntryBytes()
	run := func(partial bool) ([]float32, *Timing) {
		devMissOn = partial
		m := open(t, "hf", 16, 0, Options{Backend: testBackend(t), GPUCache: budget})
		if _, err := m.Preload(context.Background(), PreloadOptions{}); err != nil {
			t.Fatal(err)
		}
		return goldenRun(t, m, g)
	}
	ref, _ := run(false)
	got, tm := run(true)
	V := probe.Config.VocabSize
	worst := worstRowRel(got, ref, V)
	if worst > 1e-5 {
		t.Errorf("partly held layers routed on the device differ from the host path by %.3g (relative), want ≤ 1e-5", worst)
	}
	checkGoldenLogits(t, got, g, V)
	if d := &tm.Decode; d.DevLayers == 0 || d.GPUHits >= d.ExpertUses {
		t.Errorf("%d layers routed on the device, %d tier hits of %d uses: want partly held layers on the device", d.DevLayers, d.GPUHits, d.ExpertUses)
	}
	t.Logf("on the GPU: worst relative difference from the host path %.3g", worst)
}
