package model

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/runtime/backend"
)

// ref64 is a float64 forward pass of the other families (qwen3_moe, glm4_moe, deepseek_v3), written from
// transformers' modeling files independently of the runtime (no backend, no shared code but the
// manifest reader), over a 16-bit pack. It is checked against transformers' goldens itself, then
// stands in for them where the fixtures do not reach.
type ref64 struct {
	c       *format.Config
	w       map[string][]float64
	experts [][][3][]float64 // [layer][expert][gate, up, down]
}

func loadRef(t *testing.T, dir string) *ref64 {
	t.Helper()
	m, err := format.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := os.ReadFile(filepath.Join(dir, format.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	decode := func(dtype string, b []byte) []float64 {
		switch dtype {
		case format.DTypeBF16:
			v := make([]float64, len(b)/2)
			for i := range v {
				v[i] = float64(backend.BF16ToF32(binary.LittleEndian.Uint16(b[2*i:])))
			}
			return v
		case format.DTypeF32:
			v := make([]float64, len(b)/4)
			for i := range v {
				v[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
			}
			return v
		}
		t.Fatalf("reference: dtype %s (pack at 16 bits)", dtype)
		return nil
	}
	r := &ref64{c: &m.Config, w: map[string][]float64{}}
	for _, tn := range m.Tensors {
		r.w[tn.Name] = decode(tn.DType, blob[tn.Data.Offset:tn.Data.End()])
	}
	set := &m.Experts[0]
	for l, lf := range set.Layers {
		data, err := os.ReadFile(filepath.Join(dir, set.Dir, lf.File))
		if err != nil {
			t.Fatal(err)
		}
		var layer [][3][]float64
		for e := 0; e < m.Config.LayerExperts(l); e++ {
			var ex [3][]float64
			for i, p := range set.Projections {
				off := int64(e) * set.Stride
				ex[i] = decode(p.DType, data[off+p.Data.Offset:off+p.Data.End()])
			}
			layer = append(layer, ex)
		}
		r.experts = append(r.experts, layer)
	}
	return r
}

// linear is y = W x (+ b) for W [rows, len(x)].
func linear(w []float64, x []float64, b []float64) []float64 {
	cols := len(x)
	y := make([]float64, len(w)/cols)
	for i := range y {
		var s float64
		for j, xv := range x {
			s += w[i*cols+j] * xv
		}
		if b != nil {
			s += b[i]
		}
		y[i] = s
	}
	return y
}

func rmsnorm(x, w []float64, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	k := 1 / math.Sqrt(ss/float64(len(x))+eps)
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = v * k * w[i]
	}
	return y
}

func silu(x float64) float64 { return x / (1 + math.Exp(-x)) }

func mlp(gate, up, down, x []float64) []float64 {
	g, u := linear(gate, x, nil), linear(up, x, nil)
	for i := range g {
		g[i] = silu(g[i]) * u[i]
	}
	return linear(down, g, nil)
}

// rope rotates the first rd dims of v (rotate-half pairing) to position pos.
func rope(v []float64, rd int, theta float64, pos int) {
	half := rd / 2
	for i := 0; i < half; i++ {
		a := float64(pos) * math.Pow(theta, -2*float64(i)/float64(rd))
		c, s := math.Cos(a), math.Sin(a)
		x0, x1 := v[i], v[i+half]
		v[i], v[i+half] = x0*c-x1*s, x1*c+x0*s
	}
}

// topIdx is the indices of the k largest values, ties to the lower index.
func topIdx(v []float64, k int) []int {
	used := make([]bool, len(v))
	var out []int
	for len(out) < k {
		best := -1
		for i, x := range v {
			if !used[i] && (best < 0 || x > v[best]) {
				best = i
			}
		}
		used[best] = true
		out = append(out, best)
	}
	return out
}

// route is transformers' router of the family: Qwen3MoeTopKRouter or DeepseekV3's
// route_tokens_to_experts.
func (r *ref64) route(l int, logits []float64, k int) ([]int, []float64) {
	c := r.c
	if c.Architecture == format.ArchQwen3MoE {
		mx := logits[topIdx(logits, 1)[0]]
		p := make([]float64, len(logits))
		var sum float64
		for i, v := range logits {
			p[i] = math.Exp(v - mx)
			sum += p[i]
		}
		idx := topIdx(p, k)
		w := make([]float64, k)
		var top float64
		for j, e := range idx {
			w[j] = p[e] / sum
			top += w[j]
		}
		if c.NormTopKProb {
			for j := range w {
				w[j] /= top
			}
		}
		return idx, w
	}
	bias := r.w[format.LayerPrefix(l)+"mlp.gate.e_score_correction_bias"]
	E := len(logits)
	s, choice := make([]float64, E), make([]float64, E)
	for i, v := range logits {
		s[i] = 1 / (1 + math.Exp(-v))
		choice[i] = s[i] + bias[i]
	}
	per := E / c.NGroup
	gs := make([]float64, c.NGroup)
	for g := range gs {
		two := topIdx(choice[g*per:(g+1)*per], 2)
		gs[g] = choice[g*per+two[0]] + choice[g*per+two[1]]
	}
	keep := map[int]bool{}
	for _, g := range topIdx(gs, c.TopKGroup) {
		keep[g] = true
	}
	for i := range choice {
		if !keep[i/per] {
			choice[i] = 0
		}
	}
	idx := topIdx(choice, k)
	w := make([]float64, k)
	var sum float64
	for j, e := range idx {
		w[j] = s[e]
		sum += s[e]
	}
	for j := range w {
		if c.NormTopKProb {
			w[j] /= sum + 1e-20
		}
		w[j] *= c.RoutedScalingFactor
	}
	return idx, w
}

// forward returns the logits at every position of ids (k experts per token).
func (r *ref64) forward(ids []int, k int) [][]float64 {
	c := r.c
	H := c.HiddenSize
	T := len(ids)
	h := make([][]float64, T)
	for p, id := range ids {
		h[p] = append([]float64(nil), r.w["model.embed_tokens.weight"][id*H:(id+1)*H]...)
	}
	for l := 0; l < c.NumHiddenLayers; l++ {
		pre := format.LayerPrefix(l)
		if c.MLA != nil {
			r.mlaAttention(pre, h)
		} else {
			r.gqaAttention(pre, h)
		}
		for p := range h {
			xn := rmsnorm(h[p], r.w[pre+"post_attention_layernorm.weight"], c.RMSNormEps)
			var y []float64
			if c.Dense(l) {
				y = mlp(r.w[pre+"mlp.gate_proj.weight"], r.w[pre+"mlp.up_proj.weight"], r.w[pre+"mlp.down_proj.weight"], xn)
			} else {
				idx, w := r.route(l, linear(r.w[pre+"mlp.gate.weight"], xn, nil), k)
				y = make([]float64, H)
				for j, e := range idx {
					ex := r.experts[l][e]
					for i, v := range mlp(ex[0], ex[1], ex[2], xn) {
						y[i] += w[j] * v
					}
				}
				if sg := r.w[pre+"mlp.shared_experts.gate_proj.weight"]; sg != nil {
					sh := mlp(sg, r.w[pre+"mlp.shared_experts.up_proj.weight"], r.w[pre+"mlp.shared_experts.down_proj.weight"], xn)
					for i := range y {
						y[i] += sh[i]
					}
				}
			}
			for i := range y {
				h[p][i] += y[i]
			}
		}
	}
	logits := make([][]float64, T)
	for p := range h {
		logits[p] = linear(r.w["lm_head.weight"], rmsnorm(h[p], r.w["model.norm.weight"], c.RMSNormEps), nil)
	}
	return logits
}

// gqaAttention is the attention of the GQA families in float64: it adds its output to h.
func (r *ref64) gqaAttention(pre string, h [][]float64) {
	c := r.c
	nh, nkv, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
	T := len(h)
	at := pre + "self_attn."
	qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
	for p := range h {
		xn := rmsnorm(h[p], r.w[pre+"input_layernorm.weight"], c.RMSNormEps)
		qs[p] = linear(r.w[at+"q_proj.weight"], xn, r.w[at+"q_proj.bias"])
		ks[p] = linear(r.w[at+"k_proj.weight"], xn, r.w[at+"k_proj.bias"])
		vs[p] = linear(r.w[at+"v_proj.weight"], xn, r.w[at+"v_proj.bias"])
		for hh := 0; hh < nh; hh++ {
			v := qs[p][hh*hd : (hh+1)*hd]
			if qn := r.w[at+"q_norm.weight"]; qn != nil {
				copy(v, rmsnorm(v, qn, c.RMSNormEps))
			}
			rope(v, c.RotaryDim, c.RopeTheta, p)
		}
		for hh := 0; hh < nkv; hh++ {
			v := ks[p][hh*hd : (hh+1)*hd]
			if kn := r.w[at+"k_norm.weight"]; kn != nil {
				copy(v, rmsnorm(v, kn, c.RMSNormEps))
			}
			rope(v, c.RotaryDim, c.RopeTheta, p)
		}
	}
	for p := range h {
		out := make([]float64, nh*hd)
		for hh := 0; hh < nh; hh++ {
			kh := hh / (nh / nkv)
			q := qs[p][hh*hd : (hh+1)*hd]
			sc := make([]float64, p+1)
			mx := math.Inf(-1)
			for j := 0; j <= p; j++ {
				var d float64
				for i := range q {
					d += q[i] * ks[j][kh*hd+i]
				}
				sc[j] = d / math.Sqrt(float64(hd))
				mx = math.Max(mx, sc[j])
			}
			var sum float64
			for j := range sc {
				sc[j] = math.Exp(sc[j] - mx)
				sum += sc[j]
			}
			for j := range sc {
				for i := 0; i < hd; i++ {
					out[hh*hd+i] += sc[j] / sum * vs[j][kh*hd+i]
				}
			}
		}
		o := linear(r.w[at+"o_proj.weight"], out, nil)
		for i := range o {
			h[p][i] += o[i]
		}
	}
}

func rel64(got []float32, want []float64) float64 {
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - w
		num += d * d
		den += w * w
	}
	return math.Sqrt(num / den)
}

// TestReferenceAgainstTransformers: the float64 reference matches transformers' goldens on the
// fixtures, so it can be trusted where they do not reach.
func TestReferenceAgainstTransformers(t *testing.T) {
	for _, c := range familyCases {
		if c.golden == "bf16-long" {
			continue // the same paths; 80 positions cost the O(T²) reference seconds
		}
		t.Run(c.family+"/"+c.golden, func(t *testing.T) {
			g := readGolden(t, "../../arch/"+c.family+"/golden/"+c.golden)
			r := loadRef(t, packed(t, "../arch/"+c.family+"/hf", 16))
			k := c.k
			if k == 0 {
				k = r.c.NumExpertsPerTok
			}
			ids := g.i64["input_ids"]
			V := r.c.VocabSize
			worst := 0.0
			for p, lg := range r.forward(ids, k) {
				want := g.f32["logits"][p*V : (p+1)*V]
				lf := make([]float32, V)
				for i, v := range lg {
					lf[i] = float32(v)
				}
				worst = max(worst, rel(lf, want))
			}
			t.Logf("float64 reference vs transformers: worst logits relative error %.3g", worst)
			if worst > 1e-4 {
				t.Errorf("reference differs from transformers by %.3g", worst)
			}
		})
	}
}

// TestFamilySynthAgainstReference: the runtime matches the float64 reference on the synthetic
// models that run what the transformers fixtures leave out (a Qwen3-MoE dense layer, GLM-4.5
// grouped routing and q/k norm), at the model's K and at K=2, and with the routing weights
// renormalised (norm_topk_prob) or not.
func TestFamilySynthAgainstReference(t *testing.T) {
	for _, preset := range []string{"qwen3-moe-tiny", "glm4-moe-tiny", "deepseek-v3-tiny"} {
		dir := synthPacked(t, preset)
		for _, norm := range []bool{true, false} {
			setNormTopK(t, dir, norm)
			r := loadRef(t, dir)
			for _, k := range []int{0, 2} {
				t.Run(fmt.Sprintf("%s/norm=%v/k%d", preset, norm, k), func(t *testing.T) {
					m, err := Open(dir, Options{ExpertsPerToken: k})
					if err != nil {
						t.Fatal(err)
					}
					defer m.Close()
					ids := []int{3, 17, 400, 9, 1023, 5, 77, 12}
					got := forwardAll(t, m, ids)
					V := m.Config.VocabSize
					worst := 0.0
					for p, want := range r.forward(ids, m.K) {
						worst = max(worst, rel64(got[p*V:(p+1)*V], want))
					}
					t.Logf("runtime vs float64 reference: worst logits relative error %.3g", worst)
					if worst > 1e-4 {
						t.Errorf("runtime differs from the reference by %.3g", worst)
					}
				})
			}
		}
	}
}

// setNormTopK rewrites a pack's manifest with norm_topk_prob set (and re-signed).
func setNormTopK(t *testing.T, dir string, norm bool) {
	t.Helper()
	m, err := format.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	m.Config.NormTopKProb = norm
	data, err := format.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, format.ManifestName), data, 0o644); err != nil {
		t.Fatal(err)
	}
}
