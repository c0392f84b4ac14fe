package model

// The automatic share with a fixed cost a layer on each side
// (Options.MissAffine, an experiment: fmoe-run's FMOE_CPU_TUNE=affine).
// The ratio tuner (sharetune.go) prices an expert at each side's time over
// its experts, so a cost a layer pays once is spread over however few
// experts that layer had: the CPUs' wake (BenchmarkExpertsAfterIdle: one
// expert after an idle 204 µs, four 412 µs, on an H100 host's 16 threads)
// and, on a partly held layer, the earlier layers' prefetch copies still
// ahead of the layer's misses on the copy stream. With one or two experts
// a side, as on the tiered K=10 layer (2.45 misses), that overrates what
// one more expert on the CPUs saves (run 31: the share grew to 0.65 and
// the layer was 18-23% slower). Here each side's time is fitted as
// fixed + per expert × n over the layers measured, and a partly held
// layer's n misses are split where the later side finishes first.

// affineFit is a least-squares fit of t = fixed + per × n, each layer's
// weight decaying by autoWeight as the ratio tuner's means do.
type affineFit struct {
	s0, sn, snn, st, snt float64
	// The last line the layers told apart: it stands while later layers
	// all had one count of experts (as when the split settles on one
	// expert a side, or the older layers' weight has decayed).
	fixed, per float64
	fitted     bool
}

func (f *affineFit) add(n int, t float64) {
	k, x := 1-autoWeight, float64(n)
	f.s0 = k*f.s0 + 1
	f.sn = k*f.sn + x
	f.snn = k*f.snn + x*x
	f.st = k*f.st + t
	f.snt = k*f.snt + x*t
}

// line is the fit: ok is false until the layers measured had more than
// one count of experts (the two costs are not told apart before); after,
// where they no longer tell them apart, the last line stands. A fit that
// noise made negative falls back to what the data can say: a line
// through the origin (the ratio tuner's) for a negative fixed cost, the
// mean time a layer for a negative slope.
func (f *affineFit) line() (fixed, per float64, ok bool) {
	det := f.s0*f.snn - f.sn*f.sn
	if f.s0 == 0 || det <= 1e-9*f.s0*f.snn {
		return f.fixed, f.per, f.fitted
	}
	per = (f.s0*f.snt - f.sn*f.st) / det
	fixed = (f.st - per*f.sn) / f.s0
	switch {
	case per < 0:
		fixed, per = f.st/f.s0, 0
	case fixed < 0:
		fixed, per = 0, f.snt/f.snn
	}
	f.fixed, f.per, f.fitted = fixed, per, true
	return fixed, per, true
}

// splitCount is how many of n misses the CPUs take: the count whose later
// side ends first, each side costing nothing when it has none (a layer
// with no link miss waits for no copy, one with none on the CPUs wakes
// none). Ties go to the link, which also admits the expert to the GPU
// tier.
func splitCount(n int, cpuFixed, cpuPer, linkFixed, linkPer float64) int {
	cost := func(k int) float64 {
		c, l := 0.0, 0.0
		if k > 0 {
			c = cpuFixed + cpuPer*float64(k)
		}
		if k < n {
			l = linkFixed + linkPer*float64(n-k)
		}
		return max(c, l)
	}
	best := 0
	for k := 1; k <= n; k++ {
		if cost(k) < cost(best) {
			best = k
		}
	}
	return best
}
