package format

import (
	"encoding/json"
	"fmt"
	"math"
)

// deepseekV3Family is DeepSeek-V3 (V3, R1, V3.1) and Kimi-K2, which shares its architecture:
// Multi-head Latent Attention, YaRN rotary, GLM-4.5's grouped sigmoid router with shared
// experts and first_k_dense_replace dense layers. The multi-token-prediction layers after the
// last (num_nextn_predict_layers) are skipped by the converter.
var deepseekV3Family = &family{
	arch:          ArchDeepseekV3,
	name:          "DeepSeek-V3 / Kimi-K2",
	modelTypes:    []string{"deepseek_v3", "kimi_k2"},
	partialRotary: 1,
	ropeTypes:     []string{"yarn"},
	parse:         parseDeepseekV3,
	validate:      validateDeepseekV3,
	schema:        deepseekV3Schema,
}

// MLA is the shape of Multi-head Latent Attention (transformers' DeepseekV3Attention). A query
// is q_b_proj(q_a_layernorm(q_a_proj(x))) (q_proj(x) when QLoraRank is 0): per head
// QKNopeHeadDim dims without rotary, then QKRopeHeadDim with it. kv_a_proj_with_mqa(x) gives the
// latent (KVLoraRank, normed by kv_a_layernorm) and one rotary key shared by every head;
// kv_b_proj up-projects the latent to each head's key (QKNopeHeadDim) and value (VHeadDim).
type MLA struct {
	QLoraRank      int  `json:"q_lora_rank"` // 0: q_proj, no LoRA
	KVLoraRank     int  `json:"kv_lora_rank"`
	QKNopeHeadDim  int  `json:"qk_nope_head_dim"`
	QKRopeHeadDim  int  `json:"qk_rope_head_dim"`
	VHeadDim       int  `json:"v_head_dim"`
	RopeInterleave bool `json:"rope_interleave"` // rotary pairs (2i, 2i+1), not (i, i+d/2)
}

// Yarn is the YaRN rotary scaling (rope_type "yarn"), its fields as the config spells them; a
// field the config leaves out is 0 and gets transformers' default where it is used
// (runtime/model).
type Yarn struct {
	Factor               float64 `json:"factor"`
	OriginalMaxPositions int     `json:"original_max_position_embeddings"`
	BetaFast             float64 `json:"beta_fast,omitempty"`
	BetaSlow             float64 `json:"beta_slow,omitempty"`
	Mscale               float64 `json:"mscale,omitempty"`
	MscaleAllDim         float64 `json:"mscale_all_dim,omitempty"`
	AttentionFactor      float64 `json:"attention_factor,omitempty"`
	NoTruncate           bool    `json:"no_truncate,omitempty"` // truncate: false
}

// The defaults are transformers' DeepseekV3Config's.
func parseDeepseekV3(r *reader, c *Config) {
	parseGroupedMoE(r, c, 3, 8, 4)
	if r.boolOr("attention_bias", false) {
		r.fail("attention_bias is true: fmoe runs DeepSeek-V3 attention without biases (as every released checkpoint has it)")
	}
	m := &MLA{
		QLoraRank:      r.intOr("q_lora_rank", 0), // null: q_proj (absent: below)
		KVLoraRank:     r.posInt("kv_lora_rank"),
		QKNopeHeadDim:  r.posInt("qk_nope_head_dim"),
		QKRopeHeadDim:  r.posInt("qk_rope_head_dim"),
		VHeadDim:       r.posInt("v_head_dim"),
		RopeInterleave: r.boolOr("rope_interleave", true),
	}
	if _, ok := r.fields["q_lora_rank"]; !ok {
		m.QLoraRank = 1536 // transformers' default; null means no q LoRA
	}
	c.MLA = m
	// Every head has its own key and value; HeadDim is the query/key head (nope + rope), the
	// rotary part its last QKRopeHeadDim dims.
	c.NumKeyValueHeads = c.NumAttentionHeads
	c.HeadDim = m.QKNopeHeadDim + m.QKRopeHeadDim
	c.RotaryDim = m.QKRopeHeadDim
	if c.HeadDim > 0 {
		c.PartialRotaryFactor = float64(m.QKRopeHeadDim) / float64(c.HeadDim)
	}
	var rope map[string]json.RawMessage
	if !r.opt("rope_parameters", &rope) {
		r.opt("rope_scaling", &rope)
	}
	rr := reader{name: r.name + " rope parameters", fields: rope}
	switch rt := rr.str("rope_type", rr.str("type", "default")); rt {
	case "default":
		return
	case "yarn":
	default: // the hub's "type" spelling escapes ParseConfig's check of rope_type
		r.fail("rope scaling type %q is not supported (want default or yarn)", rt)
		return
	}
	y := &Yarn{
		Factor:               rr.floatOr("factor", 0),
		OriginalMaxPositions: rr.intOr("original_max_position_embeddings", c.MaxPositionEmbeddings),
		BetaFast:             rr.floatOr("beta_fast", 0),
		BetaSlow:             rr.floatOr("beta_slow", 0),
		Mscale:               rr.floatOr("mscale", 0),
		MscaleAllDim:         rr.floatOr("mscale_all_dim", 0),
		AttentionFactor:      rr.floatOr("attention_factor", 0),
		NoTruncate:           !rr.boolOr("truncate", true),
	}
	if y.Factor == 0 && y.OriginalMaxPositions > 0 { // transformers: the context's ratio
		y.Factor = float64(c.MaxPositionEmbeddings) / float64(y.OriginalMaxPositions)
	}
	c.Yarn = y
	if rr.err != nil {
		r.fail("%v", rr.err)
	}
}

func validateDeepseekV3(c *Config) error {
	if err := validateGroupedMoE(c); err != nil {
		return err
	}
	m := c.MLA
	if m == nil {
		return fmt.Errorf("%s config lacks its latent-attention sizes (mla)", c.Architecture)
	}
	for _, d := range []struct {
		name string
		v    int
		zero bool
	}{
		{"q_lora_rank", m.QLoraRank, true}, {"kv_lora_rank", m.KVLoraRank, false},
		{"qk_nope_head_dim", m.QKNopeHeadDim, false}, {"qk_rope_head_dim", m.QKRopeHeadDim, false},
		{"v_head_dim", m.VHeadDim, false},
	} {
		if d.v > maxDim || d.v < 0 || d.v == 0 && !d.zero {
			return fmt.Errorf("%s is %d, want a positive integer at most %d", d.name, d.v, maxDim)
		}
	}
	switch {
	case m.QKRopeHeadDim%2 != 0:
		return fmt.Errorf("qk_rope_head_dim %d is odd: rotary turns pairs of dims", m.QKRopeHeadDim)
	case c.HeadDim != m.QKNopeHeadDim+m.QKRopeHeadDim || c.RotaryDim != m.QKRopeHeadDim || c.NumKeyValueHeads != c.NumAttentionHeads:
		return fmt.Errorf("head_dim %d, rotary dim %d, %d KV heads: want qk_nope_head_dim + qk_rope_head_dim (%d), qk_rope_head_dim (%d), num_attention_heads (%d)",
			c.HeadDim, c.RotaryDim, c.NumKeyValueHeads, m.QKNopeHeadDim+m.QKRopeHeadDim, m.QKRopeHeadDim, c.NumAttentionHeads)
	case m.VHeadDim > c.HeadDim:
		// The runtime pads each value head with zeros to the key head's width.
		return fmt.Errorf("v_head_dim %d exceeds the query/key head dim %d: fmoe runs latent attention with v_head_dim at most qk_nope_head_dim + qk_rope_head_dim", m.VHeadDim, c.HeadDim)
	}
	if y := c.Yarn; y != nil {
		for _, f := range []struct {
			name string
			v    float64
		}{{"factor", y.Factor}, {"beta_fast", y.BetaFast}, {"beta_slow", y.BetaSlow}, {"mscale", y.Mscale}, {"mscale_all_dim", y.MscaleAllDim}, {"attention_factor", y.AttentionFactor}} {
			if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.name == "factor" && f.v <= 0 {
				return fmt.Errorf("rope_scaling.%s is %v, want a finite positive number", f.name, f.v)
			}
		}
		if y.OriginalMaxPositions <= 0 || y.OriginalMaxPositions > maxDim {
			return fmt.Errorf("rope_scaling.original_max_position_embeddings is %d, want a positive integer at most %d", y.OriginalMaxPositions, maxDim)
		}
	}
	return nil
}

func deepseekV3Schema(c *Config) []TensorSpec {
	m, H, nh := c.MLA, c.HiddenSize, c.NumAttentionHeads
	if m == nil {
		return nil // Validate refuses it
	}
	return schemaOf(c, func(add func(string, ...int) *TensorSpec, l int) {
		p := LayerPrefix(l) + "self_attn."
		if m.QLoraRank > 0 {
			add(p+"q_a_proj.weight", m.QLoraRank, H).Matrix = true
			add(p+"q_a_layernorm.weight", m.QLoraRank)
			add(p+"q_b_proj.weight", nh*c.HeadDim, m.QLoraRank).Matrix = true
		} else {
			add(p+"q_proj.weight", nh*c.HeadDim, H).Matrix = true
		}
		add(p+"kv_a_proj_with_mqa.weight", m.KVLoraRank+m.QKRopeHeadDim, H).Matrix = true
		add(p+"kv_a_layernorm.weight", m.KVLoraRank)
		add(p+"kv_b_proj.weight", nh*(m.QKNopeHeadDim+m.VHeadDim), m.KVLoraRank).Matrix = true
		add(p+"o_proj.weight", H, nh*m.VHeadDim).Matrix = true
	}, groupedMoESchema(c))
}
