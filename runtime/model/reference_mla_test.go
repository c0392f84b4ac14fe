package model

import (
	"math"

	"github.com/fmoe/fmoe/format"
)

// mlaAttention is transformers' DeepseekV3Attention in float64 over every position of h (the
// residual stream before the layer): it adds the attention output to h.
func (r *ref64) mlaAttention(pre string, h [][]float64) {
	c, m := r.c, r.c.MLA
	at := pre + "self_attn."
	nh, nope, rd, vd, kvl := c.NumAttentionHeads, m.QKNopeHeadDim, m.QKRopeHeadDim, m.VHeadDim, m.KVLoraRank
	qkh := nope + rd
	inv, att, scale := refRope(c)
	// rot is apply_rotary_pos_emb(_interleave) on one rotary vector at position p.
	rot := func(x []float64, p int) []float64 {
		y := append([]float64(nil), x...)
		if m.RopeInterleave { // view(d/2, 2).transpose: evens first, then odds
			for i := 0; i < rd/2; i++ {
				y[i], y[i+rd/2] = x[2*i], x[2*i+1]
			}
		}
		out := make([]float64, rd)
		for i := 0; i < rd/2; i++ {
			cs, sn := math.Cos(float64(p)*inv[i])*att, math.Sin(float64(p)*inv[i])*att
			out[i] = y[i]*cs - y[i+rd/2]*sn
			out[i+rd/2] = y[i+rd/2]*cs + y[i]*sn
		}
		return out
	}
	T := len(h)
	qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
	for p := range h {
		x := rmsnorm(h[p], r.w[pre+"input_layernorm.weight"], c.RMSNormEps)
		var q []float64
		if m.QLoraRank > 0 {
			qa := rmsnorm(linear(r.w[at+"q_a_proj.weight"], x, nil), r.w[at+"q_a_layernorm.weight"], 1e-6)
			q = linear(r.w[at+"q_b_proj.weight"], qa, nil)
		} else {
			q = linear(r.w[at+"q_proj.weight"], x, nil)
		}
		ckv := linear(r.w[at+"kv_a_proj_with_mqa.weight"], x, nil)
		kvb := linear(r.w[at+"kv_b_proj.weight"], rmsnorm(ckv[:kvl], r.w[at+"kv_a_layernorm.weight"], 1e-6), nil)
		kpe := rot(ckv[kvl:], p)
		ks[p], vs[p] = make([]float64, nh*qkh), make([]float64, nh*vd)
		for hh := 0; hh < nh; hh++ {
			copy(q[hh*qkh+nope:(hh+1)*qkh], rot(q[hh*qkh+nope:(hh+1)*qkh], p))
			copy(ks[p][hh*qkh:], kvb[hh*(nope+vd):hh*(nope+vd)+nope])
			copy(ks[p][hh*qkh+nope:], kpe)
			copy(vs[p][hh*vd:], kvb[hh*(nope+vd)+nope:(hh+1)*(nope+vd)])
		}
		qs[p] = q
	}
	for p := range h {
		out := make([]float64, nh*vd)
		for hh := 0; hh < nh; hh++ {
			sc := make([]float64, p+1)
			mx := math.Inf(-1)
			for j := 0; j <= p; j++ {
				var d float64
				for i := 0; i < qkh; i++ {
					d += qs[p][hh*qkh+i] * ks[j][hh*qkh+i]
				}
				sc[j] = d * scale
				mx = math.Max(mx, sc[j])
			}
			var sum float64
			for j := range sc {
				sc[j] = math.Exp(sc[j] - mx)
				sum += sc[j]
			}
			for j := range sc {
				for i := 0; i < vd; i++ {
					out[hh*vd+i] += sc[j] / sum * vs[j][hh*vd+i]
				}
			}
		}
		for i, v := range linear(r.w[at+"o_proj.weight"], out, nil) {
			h[p][i] += v
		}
	}
}

// refRope is transformers' rotary of DeepSeek-V3 in float64 (_compute_yarn_parameters when
// rope_scaling is yarn, else the default): inverse frequencies, the cos/sin factor and the
// attention's softmax scale.
func refRope(c *format.Config) (inv []float64, att, scale float64) {
	d, base := c.MLA.QKRopeHeadDim, c.RopeTheta
	scale, att = 1/math.Sqrt(float64(c.MLA.QKNopeHeadDim+d)), 1
	inv = make([]float64, d/2)
	for i := range inv {
		inv[i] = 1 / math.Pow(base, float64(2*i)/float64(d))
	}
	y := c.Yarn
	if y == nil {
		return inv, att, scale
	}
	ms := func(s, m float64) float64 {
		if s <= 1 {
			return 1
		}
		return 0.1*m*math.Log(s) + 1
	}
	f := y.Factor
	switch {
	case y.AttentionFactor != 0:
		att = y.AttentionFactor
	case y.Mscale != 0 && y.MscaleAllDim != 0:
		att = ms(f, y.Mscale) / ms(f, y.MscaleAllDim)
	default:
		att = ms(f, 1)
	}
	if y.MscaleAllDim != 0 {
		scale *= ms(f, y.MscaleAllDim) * ms(f, y.MscaleAllDim)
	}
	fast, slow := y.BetaFast, y.BetaSlow
	if fast == 0 {
		fast = 32
	}
	if slow == 0 {
		slow = 1
	}
	dim := func(rot float64) float64 {
		return float64(d) * math.Log(float64(y.OriginalMaxPositions)/(rot*2*math.Pi)) / (2 * math.Log(base))
	}
	lo, hi := dim(fast), dim(slow)
	if !y.NoTruncate {
		lo, hi = math.Floor(lo), math.Ceil(hi)
	}
	lo, hi = math.Max(lo, 0), math.Min(hi, float64(d-1))
	if lo == hi {
		hi += 0.001
	}
	for i := range inv {
		extra := 1 - math.Min(math.Max((float64(i)-lo)/(hi-lo), 0), 1)
		inv[i] = inv[i]/f*(1-extra) + inv[i]*extra
	}
	return inv, att, scale
}
