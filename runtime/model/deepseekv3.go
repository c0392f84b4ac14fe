package model

import (
	"math"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/runtime/backend"
)

// mlaLayer holds the latent-attention tensors of one DeepSeek-V3 layer (o_proj is layer.o).
type mlaLayer struct {
	qa, qaNorm, qb    backend.Tensor // q_a_proj, q_a_layernorm, q_b_proj; qa nil: qb is q_proj
	kva, kvaNorm, kvb backend.Tensor
}

// deepseekV3Layer fills a DeepSeek-V3 / Kimi-K2 layer: Multi-head Latent Attention (mla.go) and
// the grouped sigmoid MoE GLM-4.5 has, or a dense MLP in the first first_k_dense_replace layers.
func deepseekV3Layer(src *layerSource, L *layer) error {
	c, p := src.c, src.p+"self_attn."
	a := &mlaLayer{
		kva:     src.get(p + "kv_a_proj_with_mqa.weight"),
		kvaNorm: src.get(p + "kv_a_layernorm.weight"),
		kvb:     src.get(p + "kv_b_proj.weight"),
	}
	if c.MLA.QLoraRank > 0 {
		a.qa = src.get(p + "q_a_proj.weight")
		a.qaNorm = src.get(p + "q_a_layernorm.weight")
		a.qb = src.get(p + "q_b_proj.weight")
	} else {
		a.qb = src.get(p + "q_proj.weight")
	}
	L.full, L.mla, L.o = true, a, src.get(p+"o_proj.weight")
	L.mix = (*Session).latentAttention
	// The cache holds, per position, the normed latent and the rotated shared key.
	L.cacheW = [2]int{c.MLA.KVLoraRank, c.MLA.QKRopeHeadDim}
	return groupedMoELayer(src, L)
}

// mlaRope is the rotary of DeepSeek-V3 as transformers computes it: the inverse frequencies
// (YaRN's blend of interpolated and extrapolated ones when rope_scaling is yarn), the factor
// cos and sin are multiplied by, and the attention's softmax scale.
type mlaRope struct {
	inv   []float32 // [rotary/2]
	att   float64   // attention_factor (cos, sin ×)
	scale float64   // softmax scale
	inter bool      // pairs (2i, 2i+1), as rope_interleave
}

// yarnMscale is transformers' yarn_get_mscale.
func yarnMscale(scale, m float64) float64 {
	if scale <= 1 {
		return 1
	}
	return 0.1*m*math.Log(scale) + 1
}

func newMLARope(c *format.Config) mlaRope {
	m := c.MLA
	d, base := m.QKRopeHeadDim, c.RopeTheta
	r := mlaRope{inv: make([]float32, d/2), att: 1, scale: 1 / math.Sqrt(float64(c.HeadDim)), inter: m.RopeInterleave}
	// torch: base ** (arange(0, d, 2).float() / d), in float32.
	posFreq := func(i int) float32 { return float32(math.Pow(base, float64(float32(2*i)/float32(d)))) }
	y := c.Yarn
	if y == nil {
		for i := range r.inv {
			r.inv[i] = 1 / posFreq(i)
		}
		return r
	}
	f := y.Factor
	r.att = y.AttentionFactor
	if r.att == 0 {
		if y.Mscale != 0 && y.MscaleAllDim != 0 {
			r.att = yarnMscale(f, y.Mscale) / yarnMscale(f, y.MscaleAllDim)
		} else {
			r.att = yarnMscale(f, 1)
		}
	}
	if y.MscaleAllDim != 0 {
		ms := yarnMscale(f, y.MscaleAllDim)
		r.scale *= ms * ms
	}
	bf, bs := y.BetaFast, y.BetaSlow
	if bf == 0 {
		bf = 32
	}
	if bs == 0 {
		bs = 1
	}
	corr := func(rot float64) float64 {
		return float64(d) * math.Log(float64(y.OriginalMaxPositions)/(rot*2*math.Pi)) / (2 * math.Log(base))
	}
	lo, hi := corr(bf), corr(bs)
	if !y.NoTruncate {
		lo, hi = math.Floor(lo), math.Ceil(hi)
	}
	lo, hi = max(lo, 0), min(hi, float64(d-1))
	if lo == hi {
		hi += 0.001
	}
	for i := range r.inv {
		ramp := float32(min(max((float64(i)-lo)/(hi-lo), 0), 1))
		extra := 1 - ramp
		pf := posFreq(i)
		r.inv[i] = 1/(float32(f)*pf)*(1-extra) + 1/pf*extra
	}
	return r
}

// rotation writes to w ([n, n] row-major, n = off+rotary) the matrix that scales dims [0, off)
// by alpha and turns dims [off, n) as transformers' rotary does at position pos, alpha times:
// out = w·x. With rope_interleave, pair i is input dims (2i, 2i+1), written to (i, i+d/2) as
// apply_rotary_pos_emb_interleave does; the order differs from the input's, but the query's
// and the key's alike, so their products are transformers'.
func (r *mlaRope) rotation(w []float32, off, pos int, alpha float64) {
	d := 2 * len(r.inv)
	n := off + d
	clear(w[:n*n])
	for i := 0; i < off; i++ {
		w[i*n+i] = float32(alpha)
	}
	h := d / 2
	for i, inv := range r.inv {
		// torch: freqs = inv_freq @ position in float32, cos/sin × attention_scaling.
		ang := float64(float32(pos) * inv)
		c, s := float32(math.Cos(ang)*r.att), float32(math.Sin(ang)*r.att)
		a, b := i, i+h // source dims of the pair
		if r.inter {
			a, b = 2*i, 2*i+1
		}
		lo, hiRow := off+i, off+i+h
		w[lo*n+off+a] = c * float32(alpha)
		w[lo*n+off+b] = -s * float32(alpha)
		w[hiRow*n+off+b] = c * float32(alpha)
		w[hiRow*n+off+a] = s * float32(alpha)
	}
}
