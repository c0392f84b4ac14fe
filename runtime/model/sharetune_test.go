package model

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// TestShareTuner: the share goes to l/(l+c) of the running means, where
// the CPUs and the link would finish a layer's misses together; the first
// layer sets the means, later ones move them by autoWeight; layers
// without both at work say nothing; the bounds hold.
func TestShareTuner(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		name        string
		start       float64
		obs         [][4]float64 // nCPU, cpu ms, nLink, link ms
		want        float64
		wantLayers  int
		tol         float64
		description string
	}{
		{"start", 0, nil, AutoShareStart, 0, 0, "no layer measured"},
		{"start given", 0.6, nil, 0.6, 0, 0, ""},
		{"start out of range", 1.5, nil, AutoShareStart, 0, 0, ""},
		// Run 26's in-place CPU (~0.24 ms an expert) beside the link (~0.14).
		{"one layer", 0, [][4]float64{{2, 0.48, 4, 0.56}}, 0.14 / (0.14 + 0.24), 1, 1e-12, ""},
		{"running means", 0, [][4]float64{{1, 0.2, 1, 0.2}, {1, 0.4, 1, 0.1}},
			// c = 0.2 + 0.1(0.4-0.2) = 0.22, l = 0.2 + 0.1(0.1-0.2) = 0.19
			0.19 / (0.19 + 0.22), 2, 1e-12, ""},
		{"nothing to compare", 0, [][4]float64{{0, 0, 3, 0.4}, {2, 0.3, 0, 0}, {1, 0, 1, 0.1}}, AutoShareStart, 0, 0, ""},
		{"fast CPUs", 0, [][4]float64{{1, 0.001, 5, 1}}, autoMax, 1, 0, ""},
		{"slow CPUs", 0, [][4]float64{{1, 10, 5, 0.5}}, autoMin, 1, 0, ""},
	} {
		tu := newShareTuner(c.start, false)
		for _, o := range c.obs {
			tu.observe(int(o[0]), time.Duration(o[1]*float64(ms)), int(o[2]), time.Duration(o[3]*float64(ms)))
		}
		r := tu.report()
		if math.Abs(r.Share-c.want) > c.tol || tu.value() != r.Share || r.Layers != c.wantLayers {
			t.Errorf("%s: share %v from %d layers, want %v from %d", c.name, r.Share, r.Layers, c.want, c.wantLayers)
		}
	}
	// Many layers at steady rates: the means settle on them.
	tu := newShareTuner(0, false)
	for range 200 {
		tu.observe(3, 900*time.Microsecond, 7, 1050*time.Microsecond)
	}
	if r := tu.report(); math.Abs(r.Share-1.0/3) > 1e-9 || r.CPU != 300*time.Microsecond || r.Link != 150*time.Microsecond {
		t.Errorf("steady rates: %+v, want share 1/3 from 0.3 and 0.15 ms an expert", r)
	}
}

// TestShareTunerConcurrent: sessions of one model read and feed the share
// at once (go test -race is the check).
func TestShareTunerConcurrent(t *testing.T) {
	tu := newShareTuner(0, false)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				tu.observe(1+i, time.Duration(j+1)*time.Microsecond, 2, 50*time.Microsecond)
				if s := tu.value(); s < autoMin || s > autoMax {
					t.Errorf("share %v outside [%v, %v]", s, autoMin, autoMax)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestCPUMissesAuto: an automatic share on both of the miss rank's paths
// (the host path, and the partly held layers routed on the device) gives
// the logits of every miss on the link, bit for bit, moves off its start
// on the layers it measures, and shows in --timing.
func TestCPUMissesAuto(t *testing.T) {
	defer func(v, w bool, f func(int)) { devOff, devMissOn, onApart = v, w, f }(devOff, devMissOn, onApart)
	g := readGolden(t, "bf16")
	for _, c := range []struct{ dev, affine bool }{{false, false}, {true, false}, {true, true}} {
		dev := c.dev
		devOff, devMissOn = !dev, dev
		apart := 0
		onApart = func(k int) { apart += k }
		run := func(auto bool) ([]float32, *Timing, *Model) {
			var be interface{ Close() error }
			o := Options{HostCache: 1 << 30}
			if dev {
				fake := &devTier{keepTier: newKeepTier(nil), evenOnly: true}
				o.Backend, be = fake, fake
			} else {
				tier := &combTier{holdTier: newHoldTier(evenExperts)}
				o.Backend, be = tier, tier
			}
			t.Cleanup(func() { be.Close() })
			if auto {
				mb := cpu.New(cpu.Options{Threads: 2})
				t.Cleanup(func() { mb.Close() })
				o.MissBackend, o.MissAuto, o.MissAffine = mb, true, c.affine
			}
			m := open(t, "hf", 16, 0, o)
			if auto && c.affine {
				// Fits from the start (the layers' own counts of experts may
				// all be alike at this fixture's few misses): 0.2 ms a layer
				// on each side, the CPUs 0.1 an expert, the link 0.15.
				for n := 1; n <= 3; n++ {
					m.tune.observe(n, time.Duration(200+100*n)*time.Microsecond, n, time.Duration(200+150*n)*time.Microsecond)
				}
				if _, ok := m.tune.count(2); !ok {
					t.Fatal("affine: no split from three layers of one, two and three experts a side")
				}
			}
			if dev {
				if _, err := m.Preload(context.Background(), PreloadOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			got, _ := goldenRun(t, m, g)
			got2, tm := goldenRun(t, m, g) // warm: every miss repeats
			return append(got, got2...), tm, m
		}
		ref, _, _ := run(false)
		apart = 0
		got, tm, m := run(true)
		if i := firstDiff(got, ref); i >= 0 {
			t.Fatalf("device %v: logit %d is %v with an automatic share, %v with every miss on the link", dev, i, got[i], ref[i])
		}
		r := m.tune.report()
		if apart == 0 || r.Layers == 0 || r.Share == AutoShareStart || r.Share < autoMin || r.Share > autoMax {
			t.Errorf("device %v: %d experts apart, share %v from %d layers: want some measured and the share moved within [%v, %v]",
				dev, apart, r.Share, r.Layers, autoMin, autoMax)
		}
		if dev && tm.Decode.DevLayers == 0 {
			t.Errorf("device: no decode layer routed on the device")
		}
		var b strings.Builder
		tm.Report(&b)
		if tm.Share == nil || !strings.Contains(b.String(), "cpu share (auto)") {
			t.Errorf("device %v: --timing lacks the automatic share:\n%s", dev, b.String())
		}
		if c.affine {
			t.Logf("affine: %+v", r)
			if !r.Fitted || !strings.Contains(b.String(), "cpu split (affine)") {
				t.Errorf("affine: no fit of the two sides after %d layers, or --timing lacks it:\n%s", r.Layers, b.String())
			}
		}
	}
}

// TestCPUMissesAutoRefused: an automatic share needs a miss backend, and
// the affine split an automatic share.
func TestCPUMissesAutoRefused(t *testing.T) {
	_, err := Open(packed(t, "hf", 16), Options{Backend: testBackend(t), MissAuto: true})
	if err == nil || !strings.Contains(err.Error(), "without a miss backend") {
		t.Errorf("MissAuto without a miss backend: %v", err)
	}
	_, err = Open(packed(t, "hf", 16), Options{Backend: testBackend(t), MissAffine: true})
	if err == nil || !strings.Contains(err.Error(), "MissAffine") {
		t.Errorf("MissAffine without MissAuto: %v", err)
	}
}

// marks keeps a backend's host marks (hostMarker) in order.
type marks struct{ got []string }

func (m *marks) MarkHost(label string, _ int) { m.got = append(m.got, label) }

// check reports whether every share's marks came as start, wait, done.
func (m *marks) check() error {
	if len(m.got) == 0 || len(m.got)%3 != 0 {
		return fmt.Errorf("%d host marks: want start, wait and done for each share", len(m.got))
	}
	for i, l := range m.got {
		if want := [...]string{"share.start", "share.wait", "share.done"}[i%3]; l != want {
			return fmt.Errorf("host mark %d is %q, want %q", i, l, want)
		}
	}
	return nil
}

// slowLink (the host path's tier) and slowDev (a tier the device routes
// on) are host tiers whose link takes its time: each expert bound for the
// device waits, as a copy over PCIe does, so the miss rank's share is done
// long before the host reaches its wait. Both keep their host marks.
type slowLink struct {
	*combTier
	delay time.Duration
	marks
}

func (s *slowLink) BindExpert(l, id int, ws []backend.Weight) ([]backend.Tensor, error) {
	time.Sleep(s.delay)
	return s.combTier.BindExpert(l, id, ws)
}

type slowDev struct {
	*devTier
	delay time.Duration
	marks
}

func (s *slowDev) BindExpert(l, id int, ws []backend.Weight) ([]backend.Tensor, error) {
	time.Sleep(s.delay)
	return s.devTier.BindExpert(l, id, ws)
}

// openAuto opens the fixture beside tier with an automatic share as
// fmoe-run runs it (one task of mb's threads) from start (0:
// AutoShareStart), preloading a tier the device routes on; it closes mb
// and tier at the test's end.
func openAuto(t *testing.T, tier interface {
	backend.Backend
	Close() error
}, mb backend.Backend, start float64, dev bool) *Model {
	t.Helper()
	t.Cleanup(func() { mb.Close(); tier.Close() })
	m := open(t, "hf", 16, 0, Options{Backend: tier, MissBackend: mb, MissShare: start, MissAuto: true, MissTask: true, HostCache: 1 << 30})
	if dev {
		if _, err := m.Preload(context.Background(), PreloadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// TestCPUMissesAutoSlowLink: an automatic share as fmoe-run runs it (one
// task on futex-woken workers, whose caller joins at the wait) must read
// the CPUs' time, not the caller's arrival after the link's part, on the
// host path and on the partly held layers routed on the device. Peer run
// 16 read the CPUs' expert as the link's (0.643 ms against a real ~0.16)
// and the share, a fixed point of that misreading, shrank from its start;
// here the link is slow and the CPUs' tiny experts quick, so the share
// must grow. Each share also marks its start, the host's wait and its end
// on a backend that keeps a timeline (FMOE_CUDA_TRACE), in that order.
func TestCPUMissesAutoSlowLink(t *testing.T) {
	defer func(v, w bool) { devOff, devMissOn = v, w }(devOff, devMissOn)
	g := readGolden(t, "bf16")
	const delay = 5 * time.Millisecond
	for _, dev := range []bool{false, true} {
		devOff, devMissOn = !dev, dev
		var tier interface {
			backend.Backend
			Close() error
			check() error
		}
		if dev {
			tier = &slowDev{devTier: &devTier{keepTier: newKeepTier(nil), evenOnly: true}, delay: delay}
		} else {
			tier = &slowLink{combTier: &combTier{holdTier: newHoldTier(evenExperts)}, delay: delay}
		}
		m := openAuto(t, tier, cpu.New(cpu.Options{Threads: 2, FutexWake: true}), 0, dev)
		_, tm := goldenRun(t, m, g)
		goldenRun(t, m, g) // warm: every miss repeats, so the layers are measured
		if dev && tm.Decode.DevLayers == 0 {
			t.Fatal("device: no decode layer routed on the device")
		}
		if err := tier.check(); err != nil {
			t.Errorf("device %v: %v", dev, err)
		}
		r := m.tune.report()
		t.Logf("device %v: link %v, CPUs %v an expert, share %v after %d layers", dev, r.Link, r.CPU, r.Share, r.Layers)
		if r.Layers == 0 {
			t.Fatalf("device %v: no layer measured", dev)
		}
		if r.CPU >= r.Link/2 || r.Share <= AutoShareStart {
			t.Errorf("device %v: the link %v an expert (%v a bind), the CPUs %v, share %v after %d layers: want the CPUs' own time, under half the link's, and the share grown from %v",
				dev, r.Link, delay, r.CPU, r.Share, r.Layers, AutoShareStart)
		}
	}
}

// slowCPUs is a miss backend whose share reads as taking extra more than
// it did: CPUs far slower than the link, as the tuner sees them.
type slowCPUs struct {
	*cpu.Backend
	extra time.Duration
}

func (s *slowCPUs) WaitExperts() (time.Duration, error) {
	took, err := s.Backend.WaitExperts()
	return took + s.extra, err
}

// TestCPUMissesAutoExplores: on the partly held layers routed on the
// device, where the share is rounded per layer, an automatic share at a
// bound that gives one side none of a layer's few misses still measures
// (explore), so it leaves a bound that is wrong: up from 0.05 beside a slow
// link, down from 0.9 beside slow CPUs. Rounded alone, neither moved.
func TestCPUMissesAutoExplores(t *testing.T) {
	defer func(v, w bool) { devOff, devMissOn = v, w }(devOff, devMissOn)
	devOff, devMissOn = false, true
	g := readGolden(t, "bf16")
	for _, c := range []struct {
		name       string
		start      float64
		link, cpus time.Duration
		grows      bool
	}{
		{"slow link", autoMin, 5 * time.Millisecond, 0, true},
		{"slow CPUs", autoMax, 0, 5 * time.Millisecond, false},
	} {
		tier := &slowDev{devTier: &devTier{keepTier: newKeepTier(nil), evenOnly: true}, delay: c.link}
		m := openAuto(t, tier, &slowCPUs{Backend: cpu.New(cpu.Options{Threads: 2, FutexWake: true}), extra: c.cpus}, c.start, true)
		for range 3 {
			goldenRun(t, m, g)
		}
		r := m.tune.report()
		t.Logf("%s: share %v after %d layers (CPUs %v, link %v an expert)", c.name, r.Share, r.Layers, r.CPU, r.Link)
		if moved := r.Share > c.start; r.Layers == 0 || moved != c.grows || r.Share == c.start {
			t.Errorf("%s: an automatic share from %v is %v after %d layers measured: want it %s", c.name, c.start, r.Share, r.Layers,
				map[bool]string{true: "grown", false: "shrunk"}[c.grows])
		}
	}
}

// slowPrefetch is a tier the device routes on whose prefetches take their
// time on the host, as queueing the next layer's copies does on CUDA.
type slowPrefetch struct {
	*devTier
	delay time.Duration
	n     int // prefetches taken
}

func (s *slowPrefetch) PrefetchExpert(l, id int, ws []backend.Weight) (int, bool, error) {
	tok, ok, err := s.devTier.PrefetchExpert(l, id, ws)
	if ok {
		s.n++
		time.Sleep(s.delay)
	}
	return tok, ok, err
}

// TestCPUMissesAutoLinkAlone: on a partly held layer the next layer's
// prefetches are queued between the link's misses and the host's wait
// for the CPUs' share (partShared); the link's rate the automatic share
// reads is its misses' alone, without the host's time queueing them.
func TestCPUMissesAutoLinkAlone(t *testing.T) {
	defer func(v, w, g bool) { devOff, devMissOn, graphsOff = v, w, g }(devOff, devMissOn, graphsOff)
	devOff, devMissOn, graphsOff = false, true, false
	const delay = 5 * time.Millisecond
	tier := &slowPrefetch{devTier: &devTier{keepTier: newKeepTier(nil), evenOnly: true, prefetch: true}, delay: delay}
	mb := cpu.New(cpu.Options{Threads: 2, FutexWake: true})
	t.Cleanup(func() { mb.Close() })
	all := hostAll(t)
	m := open(t, "hf", 16, 0, Options{Backend: tier, HostCache: all, Prefetch: true,
		MissBackend: mb, MissShare: 0.5, MissAuto: true, MissTask: true})
	src := aheadPredictor{aheadSource{E: m.Config.NumExperts, K: m.K}}
	for range 3 {
		tableSteps(t, m, src, true)
	}
	r := m.tune.report()
	t.Logf("%d prefetches; link %v, CPUs %v an expert, share %v after %d layers", tier.n, r.Link, r.CPU, r.Share, r.Layers)
	if tier.n == 0 || r.Layers == 0 || m.ExpertStats().MissRank == 0 {
		t.Fatalf("%d prefetches, %d layers measured, %d misses on the CPUs: want all three", tier.n, r.Layers, m.ExpertStats().MissRank)
	}
	if r.Link >= delay/4 {
		t.Errorf("the link read at %v an expert beside prefetches of %v each: want its misses' own rate", r.Link, delay)
	}
}
