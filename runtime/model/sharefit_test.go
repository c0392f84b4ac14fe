package model

import (
	"math"
	"testing"
	"time"
)

// TestAffineFit: layers on a line t = fixed + per × n give the line back
// once they had two counts of experts; one count alone does not tell the
// two costs apart; noise that makes a cost negative falls back to what
// the data can say.
func TestAffineFit(t *testing.T) {
	var f affineFit
	for _, n := range []int{1, 1, 2} {
		if _, _, ok := f.line(); ok && n == 1 {
			t.Fatal("a fit from one count of experts")
		}
		f.add(n, 0.2e-3+0.09e-3*float64(n))
	}
	for _, n := range []int{3, 1, 4, 2, 2, 5} {
		f.add(n, 0.2e-3+0.09e-3*float64(n))
	}
	fixed, per, ok := f.line()
	if !ok || math.Abs(fixed-0.2e-3) > 1e-12 || math.Abs(per-0.09e-3) > 1e-12 {
		t.Errorf("fit %v + %v × n (ok %v), want 0.2e-3 + 0.09e-3 × n", fixed, per, ok)
	}

	// Layers of one count alone, long enough for the earlier ones' weight
	// to vanish, tell the costs apart no more: the last line stands.
	for range 400 {
		f.add(2, 1e-3)
	}
	if fx, pr, ok := f.line(); !ok || fx != fixed || pr != per {
		t.Errorf("after 400 layers of two experts: %v + %v × n (ok %v), want the last line %v + %v × n", fx, pr, ok, fixed, per)
	}

	var one affineFit
	for range 20 {
		one.add(2, 0.5e-3)
	}
	if _, _, ok := one.line(); ok {
		t.Error("twenty layers of two experts each: a fit, want none")
	}

	var down affineFit // more experts, less time: the mean a layer, nothing an expert
	down.add(1, 0.4e-3)
	down.add(3, 0.2e-3)
	// The first layer weighs 1 - autoWeight by the second.
	w := 1 - autoWeight
	if fixed, per, ok := down.line(); !ok || per != 0 || math.Abs(fixed-(w*0.4e-3+0.2e-3)/(w+1)) > 1e-12 {
		t.Errorf("a falling line: %v + %v × n (ok %v), want the weighted mean a layer + 0", fixed, per, ok)
	}
	var steep affineFit // a negative fixed cost: the line through the origin
	steep.add(1, 0.1e-3)
	steep.add(2, 0.4e-3)
	if fixed, per, ok := steep.line(); !ok || fixed != 0 || math.Abs(per-(w*0.1e-3+2*0.4e-3)/(w+4)) > 1e-12 {
		t.Errorf("a line under the origin: %v + %v × n (ok %v), want 0 + the weighted fit through it", fixed, per, ok)
	}
}

// TestSplitCount: the count of misses for the CPUs whose later side ends
// first, each side free when it has none, ties to the link.
func TestSplitCount(t *testing.T) {
	for _, c := range []struct {
		name           string
		n              int
		cf, cp, lf, lp float64 // ms
		want           int
		why            string
	}{
		{"no misses", 0, 0.2, 0.09, 0.17, 0.14, 0, ""},
		// Run 31's tiered K=10 layer as a fit might see it: the CPUs' wake
		// and the prefetches ahead on the link both a cost a layer.
		{"one miss", 1, 0.2, 0.09, 0.17, 0.14, 1, "0.29 on the CPUs against 0.31 on the link"},
		{"two misses", 2, 0.2, 0.09, 0.17, 0.14, 1, "0.45 all on the link, max(0.29, 0.31) split, 0.38 all on the CPUs"},
		{"five misses", 5, 0.2, 0.09, 0.17, 0.14, 3, "max(0.47, 0.45)"},
		{"waking dear", 3, 2, 0.09, 0.17, 0.14, 0, "the link's 0.59 under the CPUs' wake"},
		{"tie to the link", 2, 0.1, 0.1, 0.1, 0.1, 1, "0.2 each way at one apiece; all on the CPUs 0.3, all on the link 0.3"},
		{"equal ends", 1, 0.1, 0.1, 0.1, 0.1, 0, "0.2 either way: the link"},
	} {
		if got := splitCount(c.n, c.cf, c.cp, c.lf, c.lp); got != c.want {
			t.Errorf("%s: %d of %d to the CPUs, want %d (%s)", c.name, got, c.n, c.want, c.why)
		}
	}
}

// TestShareTunerAffine: the tuner splits by its fits only when affine and
// once both sides are fitted; the report carries the fits.
func TestShareTunerAffine(t *testing.T) {
	us := time.Microsecond
	plain := newShareTuner(0, false)
	tu := newShareTuner(0, true)
	for i := range 30 {
		nc, nl := 1+i%3, 1+(i+1)%4
		cpu := time.Duration(200+90*nc) * us
		link := time.Duration(170+140*nl) * us
		plain.observe(nc, cpu, nl, link)
		tu.observe(nc, cpu, nl, link)
	}
	if _, ok := plain.count(2); ok || plain.report().Fitted {
		t.Error("a ratio tuner split by fits")
	}
	k, ok := tu.count(2)
	r := tu.report()
	if !ok || k != 1 || !r.Fitted {
		t.Errorf("affine tuner: %d of 2 to the CPUs (ok %v), want 1 by the fits", k, ok)
	}
	near := func(d time.Duration, want int) bool { return (d - time.Duration(want)*us).Abs() < us }
	if !near(r.CPUFixed, 200) || !near(r.CPUPer, 90) || !near(r.LinkFixed, 170) || !near(r.LinkPer, 140) {
		t.Errorf("report %+v: want the CPUs 200 µs + 90 an expert, the link 170 + 140", r)
	}
	if k, ok := newShareTuner(0, true).count(3); ok {
		t.Errorf("an affine tuner with nothing measured splits 3 as %d", k)
	}
}
