package routetrace

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Params is a routing model. Every layer is generated independently (flash-moe
// measured no cross-layer correlation), from its own random streams.
//
// Each of a token's K slots, in rank order, either repeats an expert of a
// recent token (probability Reuse, the lag d ≥ 1 drawn with P(d) ∝ Lag^(d-1))
// or is a fresh draw from the layer's popularity:
//   - "zipf": expert of popularity rank r (a random permutation per layer)
//     with probability ∝ (r+1)^-S;
//   - "mix": with probability HotP uniform over a hot set of Hot experts,
//     otherwise uniform over all experts.
//
// Both fit flash-moe's LRU curve up to 128 entries per layer; they differ in
// how popularity spreads over the rest, which is what a larger cache sees.
type Params struct {
	Model  string  // "zipf" or "mix"
	S      float64 // zipf: popularity exponent
	Hot    int     // mix: hot set size
	HotP   float64 // mix: probability a fresh draw is from the hot set
	Reuse  float64 // mean probability a slot repeats a recent token's expert
	Lag    float64 // geometric lag parameter in [0, 1)
	Spread float64 // layer l's reuse is Reuse·(1 + Spread·u_l), u_l uniform in [-1, 1]
}

// Models names the generators.
var Models = []string{"zipf", "mix"}

func (p Params) check() error {
	switch p.Model {
	case "zipf":
		if !(p.S >= 0 && p.S < 10) {
			return fmt.Errorf("zipf exponent %v: want 0 to 10", p.S)
		}
	case "mix":
		if p.Hot < 1 || !(p.HotP >= 0 && p.HotP <= 1) {
			return fmt.Errorf("mix: hot set %d with probability %v: want ≥ 1 and [0, 1]", p.Hot, p.HotP)
		}
	default:
		return fmt.Errorf("routing model %q: want zipf or mix", p.Model)
	}
	if !(p.Reuse >= 0 && p.Reuse < 1) || !(p.Lag >= 0 && p.Lag < 1) || !(p.Spread >= 0 && p.Spread <= 1) {
		return fmt.Errorf("reuse %v, lag %v, spread %v: want [0, 1)", p.Reuse, p.Lag, p.Spread)
	}
	return nil
}

func (p Params) asMap() map[string]float64 {
	m := map[string]float64{"reuse": p.Reuse, "lag": p.Lag, "spread": p.Spread}
	if p.Model == "zipf" {
		m["s"] = p.S
	} else {
		m["hot"], m["hot_p"] = float64(p.Hot), p.HotP
	}
	return m
}

// Options shape a generated trace.
type Options struct {
	Layers, Experts, K, Tokens int
	Seed                       uint64
	Params                     Params
	Preset                     string  // recorded in the header
	Sigma                      float64 // router logit scale for the weights (0: 2)
}

// TopGroup is the number of leading slots generated from their own
// streams and history: the top 4 of any trace with K ≥ 4 is the K=4 trace
// of the same seed, the K flash-moe measured at.
const TopGroup = 4

// maxLag bounds the reuse lag: older tokens are not looked at.
const maxLag = 256

// Generate makes a trace from a routing model.
func Generate(o Options) (*Trace, error) {
	if err := o.Params.check(); err != nil {
		return nil, fmt.Errorf("routetrace: %w", err)
	}
	if o.Params.Model == "mix" && o.Params.Hot > o.Experts {
		return nil, fmt.Errorf("routetrace: hot set of %d experts of %d", o.Params.Hot, o.Experts)
	}
	tr, err := New(Header{Layers: o.Layers, Experts: o.Experts, K: o.K, Tokens: o.Tokens,
		Model: o.Params.Model, Seed: o.Seed, Preset: o.Preset, Params: o.Params.asMap()})
	if err != nil {
		return nil, fmt.Errorf("routetrace: %w", err)
	}
	sigma := o.Sigma
	if sigma == 0 {
		sigma = 2
	}
	for l := 0; l < o.Layers; l++ {
		newLayerGen(tr, o.Params, o.Seed, l).run()
		weights(tr, l, sigma, rand.New(rand.NewPCG(o.Seed, uint64(l)<<8|3)), rand.New(rand.NewPCG(o.Seed, uint64(l)<<8|4)))
	}
	return tr, nil
}

// layerGen generates one layer's ids.
type layerGen struct {
	tr    *Trace
	p     Params
	l     int
	reuse float64
	perm  []int     // popularity rank → expert
	cdf   []float64 // zipf: cumulative popularity by rank
	rngs  [2]*rand.Rand
}

func newLayerGen(tr *Trace, p Params, seed uint64, l int) *layerGen {
	base := uint64(l) << 8
	setup := rand.New(rand.NewPCG(seed, base))
	g := &layerGen{tr: tr, p: p, l: l, perm: setup.Perm(tr.Experts)}
	g.reuse = min(p.Reuse*(1+p.Spread*(2*setup.Float64()-1)), 0.95)
	if p.Model == "zipf" {
		g.cdf = make([]float64, tr.Experts)
		var sum float64
		for r := range g.cdf {
			sum += math.Pow(float64(r+1), -p.S)
			g.cdf[r] = sum
		}
		for r := range g.cdf {
			g.cdf[r] /= sum
		}
	}
	g.rngs[0] = rand.New(rand.NewPCG(seed, base|1))
	g.rngs[1] = rand.New(rand.NewPCG(seed, base|2))
	return g
}

func (g *layerGen) run() {
	K := g.tr.K
	top := min(K, TopGroup)
	cur := make([]int, K)
	for t := 0; t < g.tr.Tokens; t++ {
		for j := 0; j < K; j++ {
			grp, hist := 0, top // the top slots look only at the top slots of the past
			if j >= top {
				grp, hist = 1, K
			}
			cur[j] = g.pick(g.rngs[grp], t, hist, cur[:j])
		}
		ids, _ := g.tr.At(t, g.l)
		for j, e := range cur {
			ids[j] = uint16(e)
		}
	}
}

// pick draws one slot of token t, distinct from taken.
func (g *layerGen) pick(r *rand.Rand, t, hist int, taken []int) int {
	if r.Float64() < g.reuse {
		d := 1
		if g.p.Lag > 0 {
			d = 1 + int(math.Log(1-r.Float64())/math.Log(g.p.Lag))
		}
		if d >= 1 && d <= min(t, maxLag) {
			ids, _ := g.tr.At(t-d, g.l)
			if e := int(ids[r.IntN(hist)]); !slices.Contains(taken, e) {
				return e
			}
		}
	}
	for {
		if e := g.fresh(r); !slices.Contains(taken, e) {
			return e
		}
	}
}

func (g *layerGen) fresh(r *rand.Rand) int {
	if g.p.Model == "zipf" {
		i, _ := slices.BinarySearch(g.cdf, r.Float64())
		return g.perm[min(i, len(g.perm)-1)]
	}
	if r.Float64() < g.p.HotP {
		return g.perm[r.IntN(g.p.Hot)]
	}
	return r.IntN(g.tr.Experts)
}

// weights fills layer l's weights: the softmax of the K largest of Experts
// normal logits of scale sigma, drawn in descending order (order statistics
// of uniforms); the top TopGroup come from r0, the rest from r1, so the top
// 4 do not depend on K.
func weights(tr *Trace, l int, sigma float64, r0, r1 *rand.Rand) {
	x := make([]float64, tr.K)
	for t := 0; t < tr.Tokens; t++ {
		u := 1.0
		for j := range x {
			r := r0
			if j >= TopGroup {
				r = r1
			}
			u *= math.Pow(open01(r), 1/float64(tr.Experts-j))
			x[j] = sigma * math.Sqrt2 * math.Erfinv(2*u-1)
		}
		var sum float64
		top := x[0]
		for j := range x {
			x[j] = math.Exp(x[j] - top)
			sum += x[j]
		}
		_, w := tr.At(t, l)
		for j := range w {
			w[j] = float32(x[j] / sum)
		}
	}
}

// open01 is uniform in (0, 1): never 0 or 1, so the logits stay finite.
func open01(r *rand.Rand) float64 {
	return (float64(r.Uint64()>>11) + 0.5) / (1 << 53)
}
