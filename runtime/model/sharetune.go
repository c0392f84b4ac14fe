package model

import (
	"sync"
	"time"
)

// The miss rank's share picked from the machine (Options.MissAuto,
// `fmoe-run --cpu-experts auto`). The share that pays is the host's, not
// the model's: run 13's H100 host computed experts on its CPUs faster
// than PCIe carried them and wanted more than 0.4, run 26's H200 host
// computed them in place at ~29 GB/s beside a 51 GB/s link, and at K=4
// a fixed 0.4 lost (docs/benchmarks.md). A layer's share and the link's
// misses run side by side, so the layer is done when the later of the
// two is: with the CPUs taking c seconds an expert and the link l, n
// misses finish together when the CPUs take n × l/(l+c) of them. Each
// layer with both at work measures c (the share's own time over its
// experts, fixed costs included, so a share too small to amortise them
// looks slow and shrinks: the safe side) and l (from the share's start
// to the host's wait for it, over the link's experts), and the share
// follows their running means.

const (
	// AutoShareStart is the share before the first measurement: near what
	// the measured hosts wanted at K=10.
	AutoShareStart = 0.3
	// autoMin keeps the CPUs a few experts to measure on, so the share
	// can grow back on a host whose CPUs were only briefly busy.
	autoMin = 0.05
	// autoMax leaves the link a few, for the same reason.
	autoMax = 0.9
	// autoWeight is a layer's weight in the running means: ~10 layers,
	// a sixth of one of the 397B's tokens, so a token's noise averages
	// out and a change of load is followed within a few tokens.
	autoWeight = 0.1
)

// shareTuner is the model's running estimate; its methods are safe for
// concurrent sessions.
type shareTuner struct {
	mu        sync.Mutex
	share     float64
	cpu, link float64 // running means, seconds an expert
	layers    int     // layers measured
	// affine (Options.MissAffine) also fits each side as a fixed cost a
	// layer plus one an expert (sharefit.go), for the partly held layers'
	// split (count).
	affine          bool
	cpuFit, linkFit affineFit
}

func newShareTuner(start float64, affine bool) *shareTuner {
	if start <= 0 || start > 1 {
		start = AutoShareStart
	}
	return &shareTuner{share: clampShare(start), affine: affine}
}

func clampShare(s float64) float64 {
	return min(max(s, autoMin), autoMax)
}

// value is the share to give the next layer.
func (t *shareTuner) value() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.share
}

// observe takes one layer's figures: the CPUs' nCPU experts took cpu,
// the link's nLink took link. A layer without both at work, or with a
// time not above 0 (a clock that did not move), says nothing of their
// ratio and is left out.
func (t *shareTuner) observe(nCPU int, cpu time.Duration, nLink int, link time.Duration) {
	if nCPU <= 0 || nLink <= 0 || cpu <= 0 || link <= 0 {
		return
	}
	c := cpu.Seconds() / float64(nCPU)
	l := link.Seconds() / float64(nLink)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.layers == 0 {
		t.cpu, t.link = c, l
	} else {
		t.cpu += autoWeight * (c - t.cpu)
		t.link += autoWeight * (l - t.link)
	}
	t.layers++
	t.share = clampShare(t.link / (t.link + t.cpu))
	if t.affine {
		t.cpuFit.add(nCPU, cpu.Seconds())
		t.linkFit.add(nLink, link.Seconds())
	}
}

// count is how many of a partly held layer's n misses the CPUs take by
// the affine fits; ok is false without them (not affine, or not yet told
// apart), where the share's rounding decides.
func (t *shareTuner) count(n int) (k int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cf, cp, lf, lp, ok := t.fits()
	if !ok {
		return 0, false
	}
	return splitCount(n, cf, cp, lf, lp), true
}

// fits is both sides' lines (sharefit.go), ok once both are told apart;
// never without affine. Called with t.mu held.
func (t *shareTuner) fits() (cpuFixed, cpuPer, linkFixed, linkPer float64, ok bool) {
	if !t.affine {
		return 0, 0, 0, 0, false
	}
	cf, cp, okC := t.cpuFit.line()
	lf, lp, okL := t.linkFit.line()
	return cf, cp, lf, lp, okC && okL
}

// ShareReport is what --timing shows of an automatic share.
type ShareReport struct {
	Share     float64       // the share now
	CPU, Link time.Duration // the running means, an expert
	Layers    int           // layers measured
	// Fitted is set where the affine fits (Options.MissAffine) split the
	// partly held layers: each side's fixed cost a layer and its cost an
	// expert.
	Fitted                               bool
	CPUFixed, CPUPer, LinkFixed, LinkPer time.Duration
}

func (t *shareTuner) report() ShareReport {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	r := ShareReport{Share: t.share, CPU: d(t.cpu), Link: d(t.link), Layers: t.layers}
	if cf, cp, lf, lp, ok := t.fits(); ok {
		r.Fitted, r.CPUFixed, r.CPUPer, r.LinkFixed, r.LinkPer = true, d(cf), d(cp), d(lf), d(lp)
	}
	return r
}
