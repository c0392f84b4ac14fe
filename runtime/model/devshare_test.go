package model

import (
	"context"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// TestPartCount: the miss rank's share of a partly held layer's misses is
// rounded per layer, so a lone miss stays on the link at 0.4 and the CPUs
// take one of two or three, two of four.
func TestPartCount(t *testing.T) {
	for _, c := range []struct {
		n     int
		share float64
		want  int
	}{{0, 0.4, 0}, {1, 0.4, 0}, {2, 0.4, 1}, {3, 0.4, 1}, {4, 0.4, 2}, {10, 0.4, 4}, {1, 0.5, 1}, {3, 0.25, 1}, {1, 1, 1}, {5, 1, 5}} {
		if got := partCount(c.n, c.share); got != c.want {
			t.Errorf("partCount(%d, %v) = %d, want %d", c.n, c.share, got, c.want)
		}
	}
}

// TestCPUMissesDevicePartial: with a miss rank (--cpu-experts) a partly
// held layer stays routed on the device, and once its ids are back the
// rank computes its share of the repeat misses the host tier holds, from
// the normed input read back with them, while the link carries the
// others. On the CPU's stand-in (devTier holding the even experts, so
// every odd pick misses) the logits are bit for bit those of the same
// layers with every miss on the link, every decode layer is routed on the
// device, the rank computes its share (all at 1, some at 0.5) and the
// link the rest, and every share is computed apart; with a host tier too
// small for the odd experts, the rank takes only those it holds.
func TestCPUMissesDevicePartial(t *testing.T) {
	defer func(v, w bool, f func(int)) { devOff, devMissOn, onApart = v, w, f }(devOff, devMissOn, onApart)
	devOff, devMissOn = false, true
	g := readGolden(t, "bf16")
	apart := 0
	onApart = func(k int) { apart += k }
	run := func(share float64, host int64) ([]float32, *Timing, *devTier, *Model) {
		fake := &devTier{keepTier: newKeepTier(nil), evenOnly: true}
		o := Options{Backend: fake, HostCache: host}
		if share > 0 {
			mb := cpu.New(cpu.Options{Threads: 2})
			t.Cleanup(func() { mb.Close() })
			o.MissBackend, o.MissShare = mb, share
		}
		m := open(t, "hf", 16, 0, o)
		if _, err := m.Preload(context.Background(), PreloadOptions{}); err != nil {
			t.Fatal(err)
		}
		got, tm := goldenRun(t, m, g)
		got2, _ := goldenRun(t, m, g) // warm: the first misses are behind
		return append(got, got2...), tm, fake, m
	}
	ref, _, _, rm := run(0, 1<<30)
	for _, share := range []float64{1, 0.5} {
		apart = 0
		got, tm, fake, m := run(share, 1<<30)
		if i := firstDiff(got, ref); i >= 0 {
			t.Fatalf("share %v: logit %d is %v with the miss rank, %v with every miss on the link", share, i, got[i], ref[i])
		}
		d := &tm.Decode
		want := int64(d.Tokens * m.Config.NumHiddenLayers)
		if d.DevLayers != want || int64(fake.indexed) < want {
			t.Errorf("share %v: %d decode layers routed on the device (%d indexed launches), want %d", share, d.DevLayers, fake.indexed, want)
		}
		st := m.ExpertStats()
		if st.MissRank == 0 || d.MissRank == 0 || int64(apart) != st.MissRank {
			t.Errorf("share %v: %d misses on the miss rank (%d in the first run's decode), %d computed apart: want some, all apart", share, st.MissRank, d.MissRank, apart)
		}
		// The prompt's misses crossed the link (a prompt gives the rank
		// none), so every decode miss repeats: at 1 the rank takes all,
		// at 0.5 a layer's two misses leave one to the link.
		if link := d.ExpertUses - d.GPUHits - d.MissRank; share == 1 && link != 0 || share < 1 && link == 0 {
			t.Errorf("share %v: %d hits and %d on the miss rank of %d uses: %d on the link", share, d.GPUHits, d.MissRank, d.ExpertUses, link)
		}
	}
	checkGoldenLogits(t, ref[:len(ref)/2], g, rm.Config.VocabSize)
	// A host tier of 12 experts for the layers' odd ones: the rank takes
	// only those it holds (startApart would otherwise find one missing
	// and give the whole share back to the link), the others cross.
	apart = 0
	stride := rm.experts.set.Stride
	got, tm, _, m := run(1, 12*stride)
	if i := firstDiff(got, ref); i >= 0 {
		t.Fatalf("a small host tier: logit %d is %v with the miss rank, %v with every miss on the link", i, got[i], ref[i])
	}
	d := &tm.Decode
	if st := m.ExpertStats(); st.MissRank == 0 || int64(apart) != st.MissRank || d.ExpertUses-d.GPUHits-d.MissRank == 0 {
		t.Errorf("a small host tier: %d on the miss rank, %d apart, %d on the link: want some on each, all the rank's apart", st.MissRank, apart, d.ExpertUses-d.GPUHits-d.MissRank)
	}
}

// TestCPUMissesPrefetched: a miss rank beside the prefetches of design E
// (the picks uploaded, the next layer's predicted experts prefetched from
// the host tier): partShared queues the next layer's prefetches before it
// waits for the CPUs' share, and the logits are those of the same steps
// with every miss on the link, bit for bit, with some misses on the rank
// and some prefetches used.
func TestCPUMissesPrefetched(t *testing.T) {
	defer func(v, w, g bool) { devOff, devMissOn, graphsOff = v, w, g }(devOff, devMissOn, graphsOff)
	devOff, devMissOn, graphsOff = false, true, false
	run := func(share float64) ([][]float32, ExpertStats) {
		d := &devTier{keepTier: newKeepTier(nil), evenOnly: true, prefetch: true}
		all := hostAll(t)
		o := Options{Backend: devRecorder{&recorder{Backend: d.keepTier}, d}, HostCache: all, Prefetch: true}
		if share > 0 {
			mb := cpu.New(cpu.Options{Threads: 2})
			t.Cleanup(func() { mb.Close() })
			o.MissBackend, o.MissShare = mb, share
		}
		m := open(t, "hf", 16, 0, o)
		src := aheadPredictor{aheadSource{E: m.Config.NumExperts, K: m.K}}
		out := tableSteps(t, m, src, true)
		return append(out, tableSteps(t, m, src, true)...), m.ExpertStats()
	}
	want, _ := run(0)
	got, st := run(0.5)
	if st.MissRank == 0 || st.PrefetchUsed == 0 || st.DevLayers == 0 {
		t.Fatalf("%d misses on the rank, %d prefetches used, %d layers routed on the device: want all three", st.MissRank, st.PrefetchUsed, st.DevLayers)
	}
	for i := range want {
		if j := firstDiff(got[i], want[i]); j >= 0 {
			t.Fatalf("step %d: logit %d is %v with the miss rank, %v with every miss on the link", i, j, got[i][j], want[i][j])
		}
	}
}

// TestPartShares: a partly held layer reads its normed input back for a
// miss rank only with the rank, a host tier to compute from, and room for
// the ids and the input in one asynchronous read (else every miss takes
// the link, as without a rank).
func TestPartShares(t *testing.T) {
	for _, c := range []struct {
		miss, K, H int
		tier       bool
		want       bool
	}{
		{1, 10, 4096, true, true},  // the 397B: 4,126 values
		{1, 32, 7168, true, true},  // 7,264 values
		{1, 10, 8192, true, false}, // 8,222 > MaxAsyncRead
		{0, 10, 4096, true, false}, // no miss rank
		{1, 10, 4096, false, false},
	} {
		m := &Model{miss: c.miss, K: c.K, experts: &expertReader{}}
		m.Config.HiddenSize = c.H
		if c.tier {
			m.experts.tier = &hostTier{}
		}
		if got := m.partShares(); got != c.want {
			t.Errorf("miss rank %d, K=%d, H=%d, host tier %v: partShares = %v, want %v", c.miss, c.K, c.H, c.tier, got, c.want)
		}
	}
}

// sameSource picks the same experts for a layer at every position, so
// that each step's misses repeat.
type sameSource struct{ aheadSource }

func (a sameSource) Choose(l, _ int, idx []int, w []float32) error {
	return a.aheadSource.Choose(l, 0, idx, w)
}

// TestCPUMissesAdmitted: with Options.MissAdmit the experts the miss rank
// computes on a partly held layer also go up to the GPU tier (as
// prefetches for the layer's next step), so that at their next pick they
// are the tier's hits instead of the CPUs' again; the logits stay those of
// the steps without it, bit for bit.
func TestCPUMissesAdmitted(t *testing.T) {
	defer func(v, w, g bool) { devOff, devMissOn, graphsOff = v, w, g }(devOff, devMissOn, graphsOff)
	devOff, devMissOn, graphsOff = false, true, false
	run := func(admit bool) ([][]float32, ExpertStats) {
		d := &devTier{keepTier: newKeepTier(nil), evenOnly: true, prefetch: true}
		all := hostAll(t)
		mb := cpu.New(cpu.Options{Threads: 2})
		t.Cleanup(func() { mb.Close() })
		m := open(t, "hf", 16, 0, Options{Backend: d, HostCache: all, Prefetch: true, MissBackend: mb, MissShare: 0.5, MissAdmit: admit})
		src := sameSource{aheadSource{E: m.Config.NumExperts, K: m.K}}
		out := tableSteps(t, m, src, true)
		return out, m.ExpertStats()
	}
	want, off := run(false)
	got, on := run(true)
	t.Logf("without: %d GPU hits, %d on the CPUs, %d prefetched; with: %d, %d, %d",
		off.GPUHits, off.MissRank, off.Prefetched, on.GPUHits, on.MissRank, on.Prefetched)
	if off.MissRank == 0 || on.Prefetched == 0 || on.PrefetchUsed == 0 {
		t.Fatalf("%d misses on the rank without admission; %d admitted, %d of them used with it: want all above 0", off.MissRank, on.Prefetched, on.PrefetchUsed)
	}
	if on.GPUHits <= off.GPUHits || on.MissRank >= off.MissRank {
		t.Errorf("admitted: %d GPU hits and %d misses on the CPUs, against %d and %d without: want more hits, fewer on the CPUs",
			on.GPUHits, on.MissRank, off.GPUHits, off.MissRank)
	}
	for i := range want {
		if j := firstDiff(got[i], want[i]); j >= 0 {
			t.Fatalf("step %d: logit %d is %v admitted, %v without", i, j, got[i][j], want[i][j])
		}
	}
}
