package pack

import (
	"encoding/json"
	"fmt"

	"github.com/fmoe/fmoe/format"
)

// Qwen3-Next stores each GatedDeltaNet layer's input projections as two fused matrices,
// interleaved per key head g (nk key heads, r = nv/nk value heads per key head):
//
//	in_proj_qkvz rows, for g in 0..nk: q_g [hk], k_g [hk], v_g [r·hv], z_g [r·hv]
//	in_proj_ba   rows, for g in 0..nk: b_g [r],  a_g [r]
//
// (transformers' Qwen3NextGatedDeltaNet.fix_query_key_value_ordering). Value head g·r+j is the
// j-th of key head g, the order Qwen3.5-MoE's separate blocks keep: in_proj_qkv = all q, all k,
// all v; in_proj_z; in_proj_b; in_proj_a. The packer reads the fused rows in that order as
// Qwen3.5's four tensors, so a Qwen3-Next pack is a Qwen3.5-MoE pack (format/qwen3next.go).

// fusedPart is one of Qwen3.5's projections, made of rows of a fused Qwen3-Next tensor.
type fusedPart struct {
	src  *srcTensor
	rows []int // source rows, in the order the part stores them
}

// splitFused registers, for a Qwen3-Next checkpoint, each linear-attention layer's four
// Qwen3.5 projections as row selections of its fused tensors, after checking their shapes.
func (c *checkpoint) splitFused() error {
	if sourceModelType(c.rawConfig) != format.ModelTypeQwen3Next {
		return nil
	}
	cfg := &c.config
	nk, nv, hk, hv := cfg.LinearNumKeyHeads, cfg.LinearNumValueHeads, cfg.LinearKeyHeadDim, cfg.LinearValueHeadDim
	r := nv / nk
	qkvzBlock, baBlock := 2*hk+2*r*hv, 2*r
	var q, k, v, z, b, a []int
	for g := 0; g < nk; g++ {
		q = appendRange(q, g*qkvzBlock, hk)
		k = appendRange(k, g*qkvzBlock+hk, hk)
		v = appendRange(v, g*qkvzBlock+2*hk, r*hv)
		z = appendRange(z, g*qkvzBlock+2*hk+r*hv, r*hv)
		b = appendRange(b, g*baBlock, r)
		a = appendRange(a, g*baBlock+r, r)
	}
	qkv := append(append(q, k...), v...)
	c.fused = map[string]fusedPart{}
	for l, t := range cfg.LayerTypes {
		if t != format.LinearAttention {
			continue
		}
		p := format.LayerPrefix(l) + "linear_attn."
		for _, f := range []struct {
			name, why string
			rows      int
			parts     map[string][]int
		}{
			{"in_proj_qkvz", fmt.Sprintf("linear_num_key_heads %d × (2 × linear_key_head_dim %d + 2 × %d value heads per key head × linear_value_head_dim %d)", nk, hk, r, hv),
				nk * qkvzBlock, map[string][]int{"in_proj_qkv": qkv, "in_proj_z": z}},
			{"in_proj_ba", fmt.Sprintf("2 × linear_num_value_heads %d", nv), nk * baBlock, map[string][]int{"in_proj_b": b, "in_proj_a": a}},
		} {
			srcs, err := c.fusedSource(p+f.name, f.rows, f.why)
			if err != nil {
				return err
			}
			for part, rows := range f.parts {
				for suffix, src := range srcs {
					c.fused[p+part+suffix] = fusedPart{src: src, rows: rows}
				}
			}
		}
	}
	return nil
}

// fusedSource finds a fused projection (base "…in_proj_qkvz") and checks it has the rows the
// config implies: a float or FP8 [rows, hidden_size] weight, or an MLX-quantised one with its
// scales and biases (encodeDense checks their columns, as for any quantised matrix). It returns
// the tensors by suffix.
func (c *checkpoint) fusedSource(base string, rows int, why string) (map[string]*srcTensor, error) {
	cfg := &c.config
	t, ok := c.tensors[base+".weight"]
	if !ok {
		return nil, fmt.Errorf("source checkpoint %s: tensor %s is missing (Qwen3-Next stores %s's linear-attention input projections fused in it)", c.dir, c.origName(base+".weight"), layerWhat(base))
	}
	srcs := map[string]*srcTensor{".weight": t}
	cols := cfg.HiddenSize
	switch {
	case t.dtype == format.DTypeU32 && c.quant != nil:
		cols = -1 // packed words; checkQuantShape checks them against the bits
		for _, suffix := range []string{".scales", ".biases"} {
			q, ok := c.tensors[base+suffix]
			if !ok {
				return nil, fmt.Errorf("source checkpoint %s: tensor %s is quantised but %s is missing", c.dir, t.orig, c.origName(base+suffix))
			}
			if len(q.shape) != 2 || q.shape[0] != rows {
				return nil, fmt.Errorf("source checkpoint %s: tensor %s has shape %v, want %d rows (%s)", c.dir, q.orig, q.shape, rows, why)
			}
			srcs[suffix] = q
		}
	case t.scale == nil && !isFloat(t.dtype):
		return nil, fmt.Errorf("source checkpoint %s: tensor %s has dtype %s; fmoe reads Qwen3-Next's fused projections in BF16, F16, F32, block-scaled FP8 or MLX affine", c.dir, t.orig, t.dtype)
	}
	if len(t.shape) != 2 || t.shape[0] != rows || cols > 0 && t.shape[1] != cols {
		return nil, fmt.Errorf("source checkpoint %s: tensor %s has shape %v, the config implies [%d %d] (%s by hidden_size %d)",
			c.dir, t.orig, t.shape, rows, cfg.HiddenSize, why, cfg.HiddenSize)
	}
	return srcs, nil
}

// tensor looks a tensor up by canonical name, assembling a Qwen3.5 projection from its fused
// Qwen3-Next source (in memory, named after the fused tensor in messages). Reading a part marks
// the fused tensor read.
func (c *checkpoint) tensor(canon string) (*srcTensor, bool) {
	if t, ok := c.tensors[canon]; ok {
		return t, true
	}
	f, ok := c.fused[canon]
	if !ok {
		return nil, false
	}
	f.src.used = true
	if f.src.scale != nil {
		f.src.scale.used = true
		return c.dequantFP8Rows(f.src, f.rows), true // one rounding, as Convert reads any FP8 weight
	}
	rowBytes := len(f.src.data) / f.src.shape[0]
	out := make([]byte, 0, len(f.rows)*rowBytes)
	for _, r := range f.rows {
		out = append(out, f.src.data[r*rowBytes:(r+1)*rowBytes]...)
	}
	return &srcTensor{orig: f.src.orig, dtype: f.src.dtype, shape: []int{len(f.rows), f.src.shape[1]},
		data: out, shard: f.src.shard, inMemory: true}, true
}

func appendRange(s []int, start, n int) []int {
	for i := range n {
		s = append(s, start+i)
	}
	return s
}

// sourceModelType is config.json's model_type (text_config's if it has one).
func sourceModelType(raw []byte) string {
	var cfg struct {
		MT   string `json:"model_type"`
		Text *struct {
			MT string `json:"model_type"`
		} `json:"text_config"`
	}
	if json.Unmarshal(raw, &cfg) != nil {
		return ""
	}
	if cfg.Text != nil && cfg.Text.MT != "" {
		return cfg.Text.MT
	}
	return cfg.MT
}
