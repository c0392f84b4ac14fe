package routetrace

import (
	"fmt"
	"math"
)

// FlashMoE is what flash-moe measured of Qwen3.5-397B-A17B's routing (its
// paper, 200 tokens, at its default K=4; /docs/benchmarks.md#routing-traces).
var FlashMoE = struct {
	Layers, Experts, K, Tokens int
	Sizes                      []int     // LRU entries per layer
	Hit                        []float64 // per-layer LRU hit rate at Sizes
	DistinctWindow             int       // tokens
	DistinctLo, DistinctHi     float64   // share of the experts used per layer in DistinctWindow tokens
	OverlapLo, OverlapHi       float64   // consecutive-token overlap per layer
}{60, 512, 4, 200, []int{16, 32, 64, 128}, []float64{0.49, 0.59, 0.68, 0.71}, 30, 0.43, 0.57, 0.08, 0.34}

// Fitted are the models fitted to FlashMoE by Fit (seeds 1–3; the figures
// they give are in docs/benchmarks.md and checked by the package's tests).
var Fitted = map[string]Params{
	"zipf": {Model: "zipf", S: 0.907, Reuse: 0.429, Lag: 0.697, Spread: fitSpread},
	"mix":  {Model: "mix", Hot: 16, HotP: 0.494, Reuse: 0.397, Lag: 0.577, Spread: fitSpread},
}

// fitSpread is the per-layer reuse spread of the fitted models: it sets the
// range of per-layer overlaps (flash-moe: 8–34%), not the means.
const fitSpread = 0.6

// LRUCurve is the mean over layers of the per-layer LRU hit rate at each
// size, over tokens [from, to), for traces of the given model and seeds
// (the mean over seeds).
func LRUCurve(p Params, layers, experts, k, tokens, from int, sizes []int, seeds []uint64) ([]float64, error) {
	out := make([]float64, len(sizes))
	for _, s := range seeds {
		tr, err := Generate(Options{Layers: layers, Experts: experts, K: k, Tokens: tokens, Seed: s, Params: p})
		if err != nil {
			return nil, err
		}
		for i, c := range sizes {
			out[i] += mean(SimulateLRU(tr, c, from, tokens)) / float64(len(seeds))
		}
	}
	return out, nil
}

// fitLoss is the squared error of a model's LRU curve against flash-moe's,
// plus a lighter pull of the mean consecutive overlap to the middle of
// flash-moe's range.
func fitLoss(p Params, seeds []uint64) float64 {
	f := FlashMoE
	var loss float64
	for _, s := range seeds {
		tr, err := Generate(Options{Layers: f.Layers, Experts: f.Experts, K: f.K, Tokens: f.Tokens, Seed: s, Params: p})
		if err != nil {
			return math.Inf(1)
		}
		for i, c := range f.Sizes {
			d := mean(SimulateLRU(tr, c, 0, f.Tokens)) - f.Hit[i]
			loss += d * d
		}
		d := mean(Overlap(tr, f.Tokens)) - (f.OverlapLo+f.OverlapHi)/2
		loss += 0.25 * d * d
	}
	return loss / float64(len(seeds))
}

// Fit fits a model's continuous parameters to FlashMoE by Nelder–Mead from
// start (for "mix" the hot set size stays start's), with common random
// numbers (the same seeds at every step), in at most evals evaluations.
// It returns the parameters and the loss.
func Fit(start Params, seeds []uint64, evals int) (Params, float64, error) {
	if err := start.check(); err != nil {
		return Params{}, 0, fmt.Errorf("routetrace: fit: %w", err)
	}
	// Unconstrained coordinates: logit of each parameter in (0, 1); the
	// zipf exponent is scaled by 3.
	enc := func(p Params) []float64 {
		first := p.S / 3
		if p.Model == "mix" {
			first = p.HotP
		}
		return []float64{logit(first), logit(p.Reuse), logit(p.Lag)}
	}
	dec := func(x []float64) Params {
		p := start
		if p.Model == "zipf" {
			p.S = 3 * sigmoid(x[0])
		} else {
			p.HotP = sigmoid(x[0])
		}
		p.Reuse, p.Lag = min(sigmoid(x[1]), 0.95), min(sigmoid(x[2]), 0.99)
		return p
	}
	x, loss := nelderMead(func(x []float64) float64 { return fitLoss(dec(x), seeds) }, enc(start), 0.5, evals)
	return dec(x), loss, nil
}

func logit(p float64) float64 {
	p = min(max(p, 1e-4), 1-1e-4)
	return math.Log(p / (1 - p))
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// nelderMead minimises f from x0 with an initial simplex of step, in at
// most evals evaluations.
func nelderMead(f func([]float64) float64, x0 []float64, step float64, evals int) ([]float64, float64) {
	n := len(x0)
	pts := make([][]float64, n+1)
	val := make([]float64, n+1)
	for i := range pts {
		pts[i] = append([]float64(nil), x0...)
		if i > 0 {
			pts[i][i-1] += step
		}
		val[i] = f(pts[i])
	}
	used := n + 1
	at := func(c []float64, d []float64, t float64) []float64 {
		p := make([]float64, n)
		for i := range p {
			p[i] = c[i] + t*(d[i]-c[i])
		}
		return p
	}
	for used < evals {
		// order: best first
		for i := 1; i <= n; i++ {
			for j := i; j > 0 && val[j] < val[j-1]; j-- {
				pts[j], pts[j-1] = pts[j-1], pts[j]
				val[j], val[j-1] = val[j-1], val[j]
			}
		}
		c := make([]float64, n)
		for _, p := range pts[:n] {
			for i := range c {
				c[i] += p[i] / float64(n)
			}
		}
		r := at(c, pts[n], -1)
		fr := f(r)
		used++
		switch {
		case fr < val[0]:
			e := at(c, pts[n], -2)
			fe := f(e)
			used++
			if fe < fr {
				pts[n], val[n] = e, fe
			} else {
				pts[n], val[n] = r, fr
			}
		case fr < val[n-1]:
			pts[n], val[n] = r, fr
		default:
			k := at(c, pts[n], 0.5)
			fk := f(k)
			used++
			if fk < val[n] {
				pts[n], val[n] = k, fk
				continue
			}
			for i := 1; i <= n; i++ {
				pts[i] = at(pts[0], pts[i], 0.5)
				val[i] = f(pts[i])
				used++
			}
		}
	}
	best := 0
	for i := range val {
		if val[i] < val[best] {
			best = i
		}
	}
	return pts[best], val[best]
}
