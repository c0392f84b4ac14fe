package format

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
)

// Config is the model's text config, normalised from a Hugging Face or MLX config.json.
type Config struct {
	Architecture                 string   `json:"architecture"`
	HiddenSize                   int      `json:"hidden_size"`
	NumHiddenLayers              int      `json:"num_hidden_layers"`
	VocabSize                    int      `json:"vocab_size"`
	LayerTypes                   []string `json:"layer_types"`
	NumAttentionHeads            int      `json:"num_attention_heads"`
	NumKeyValueHeads             int      `json:"num_key_value_heads"`
	HeadDim                      int      `json:"head_dim"`
	AttnOutputGate               bool     `json:"attn_output_gate"`
	RopeTheta                    float64  `json:"rope_theta"`
	PartialRotaryFactor          float64  `json:"partial_rotary_factor"`
	RotaryDim                    int      `json:"rotary_dim"`
	LinearNumKeyHeads            int      `json:"linear_num_key_heads"`
	LinearNumValueHeads          int      `json:"linear_num_value_heads"`
	LinearKeyHeadDim             int      `json:"linear_key_head_dim"`
	LinearValueHeadDim           int      `json:"linear_value_head_dim"`
	LinearConvKernelDim          int      `json:"linear_conv_kernel_dim"`
	NumExperts                   int      `json:"num_experts"`
	NumExpertsPerTok             int      `json:"num_experts_per_tok"`
	MoeIntermediateSize          int      `json:"moe_intermediate_size"`
	SharedExpertIntermediateSize int      `json:"shared_expert_intermediate_size"`
	RMSNormEps                   float64  `json:"rms_norm_eps"`
	MaxPositionEmbeddings        int      `json:"max_position_embeddings"`
	TieWordEmbeddings            bool     `json:"tie_word_embeddings"`
	EOSTokenIDs                  []int    `json:"eos_token_ids"`

	// The later families' fields (docs/format.md): omitted at their zero
	// value, so a Qwen3.5 manifest is what it was before them.
	MLPTypes            []string `json:"mlp_types,omitempty"` // per layer: MLPMoE or MLPDense; nil: all MLPMoE
	IntermediateSize    int      `json:"intermediate_size,omitempty"`
	NormTopKProb        bool     `json:"norm_topk_prob,omitempty"`
	NGroup              int      `json:"n_group,omitempty"`
	TopKGroup           int      `json:"topk_group,omitempty"`
	RoutedScalingFactor float64  `json:"routed_scaling_factor,omitempty"`
	AttentionBias       bool     `json:"attention_bias,omitempty"`
	UseQKNorm           bool     `json:"use_qk_norm,omitempty"`
	MLA                 *MLA     `json:"mla,omitempty"`          // DeepSeek-V3's latent attention (deepseekv3.go)
	Yarn                *Yarn    `json:"rope_scaling,omitempty"` // YaRN rotary scaling; nil: plain rotary
}

// Layer types.
const (
	LinearAttention = "linear_attention"
	FullAttention   = "full_attention"
)

// MLP types (Config.MLPTypes).
const (
	MLPMoE   = "moe"
	MLPDense = "dense"
)

// Dense reports whether layer l has a dense MLP instead of routed experts.
func (c *Config) Dense(l int) bool {
	return l >= 0 && l < len(c.MLPTypes) && c.MLPTypes[l] == MLPDense
}

// LayerExperts is the number of routed experts layer l stores: 0 for a dense layer.
func (c *Config) LayerExperts(l int) int {
	if c.Dense(l) {
		return 0
	}
	return c.NumExperts
}

// ConvDim is the channel count of the GatedDeltaNet causal convolution (q, k and v together).
func (c *Config) ConvDim() int {
	return 2*c.LinearNumKeyHeads*c.LinearKeyHeadDim + c.LinearNumValueHeads*c.LinearValueHeadDim
}

// ParseConfig normalises a config.json (and optionally generation_config.json, may be nil).
// name is used in error messages.
func ParseConfig(name string, data, generation []byte) (Config, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return Config{}, fmt.Errorf("%s: not a JSON object: %w", name, err)
	}
	fields := top
	if raw, ok := top["text_config"]; ok {
		var text map[string]json.RawMessage
		if err := json.Unmarshal(raw, &text); err != nil {
			return Config{}, fmt.Errorf("%s: text_config is not an object: %w", name, err)
		}
		// Nested fields win; top-level ones (tie_word_embeddings, eos) fill the gaps.
		fields = map[string]json.RawMessage{}
		for k, v := range top {
			fields[k] = v
		}
		for k, v := range text {
			fields[k] = v
		}
	}
	r := reader{name: name, fields: fields}
	var c Config

	mt := r.str("model_type", "")
	fam := familyByModelType(mt)
	if fam == nil {
		var archs []string
		r.opt("architectures", &archs)
		return Config{}, fmt.Errorf("%s: unknown architecture (model_type %q, architectures %v): fmoe runs %s", name, mt, archs, SupportedFamilies())
	}
	c.Architecture = fam.arch
	c.HiddenSize = r.posInt("hidden_size")
	c.NumHiddenLayers = r.posInt("num_hidden_layers")
	c.VocabSize = r.posInt("vocab_size")
	c.NumAttentionHeads = r.posInt("num_attention_heads")
	c.NumKeyValueHeads = r.posInt("num_key_value_heads")
	c.HeadDim = r.intOr("head_dim", 0)
	if c.HeadDim == 0 && c.NumAttentionHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	c.NumExpertsPerTok = r.posInt("num_experts_per_tok")
	c.MoeIntermediateSize = r.posInt("moe_intermediate_size")
	c.RMSNormEps = r.floatOr("rms_norm_eps", 1e-6)
	c.MaxPositionEmbeddings = r.intOr("max_position_embeddings", 32768)
	c.TieWordEmbeddings = r.boolOr("tie_word_embeddings", false)

	var rope map[string]json.RawMessage
	r.opt("rope_parameters", &rope)
	if rope == nil {
		r.opt("rope_scaling", &rope)
	}
	rr := reader{name: name + " rope_parameters", fields: rope}
	c.RopeTheta = rr.floatOr("rope_theta", r.floatOr("rope_theta", 10000))
	c.PartialRotaryFactor = rr.floatOr("partial_rotary_factor", r.floatOr("partial_rotary_factor", fam.partialRotary))
	if rt := rr.str("rope_type", "default"); rt != "default" && !slices.Contains(fam.ropeTypes, rt) {
		r.fail("rope_parameters.rope_type %q is not supported (want default)", rt)
	}
	c.RotaryDim = int(math.Round(float64(c.HeadDim) * c.PartialRotaryFactor))
	fam.parse(&r, &c)
	c.EOSTokenIDs = r.ids("eos_token_id")
	if r.err != nil {
		return Config{}, r.err
	}
	if len(generation) > 0 {
		var g map[string]json.RawMessage
		if err := json.Unmarshal(generation, &g); err != nil {
			return Config{}, fmt.Errorf("generation_config.json: %w", err)
		}
		gr := reader{name: "generation_config.json", fields: g}
		for _, id := range gr.ids("eos_token_id") {
			c.EOSTokenIDs = appendUnique(c.EOSTokenIDs, id)
		}
		if gr.err != nil {
			return Config{}, gr.err
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// maxDim bounds every dimension of a config, far above any real model's (Qwen3.5-397B's
// largest is its 248k vocabulary), so that products of two or three dimensions cannot
// overflow an int.
const maxDim = 1 << 24

// Validate checks that every dimension is in range and that they are consistent with each
// other. A manifest's config is untrusted input: this runs before anything divides by or
// allocates from these values.
func (c *Config) Validate() error {
	fam := familyByArch(c.Architecture)
	if fam == nil {
		return fmt.Errorf("architecture %q is not supported: fmoe runs %s", c.Architecture, SupportedFamilies())
	}
	// The linear-attention sizes are 0 in the families without it; qwen35.go requires them.
	for _, d := range []struct {
		name string
		v    int
		zero bool // 0 is allowed
	}{
		{"hidden_size", c.HiddenSize, false}, {"num_hidden_layers", c.NumHiddenLayers, false},
		{"vocab_size", c.VocabSize, false}, {"num_attention_heads", c.NumAttentionHeads, false},
		{"num_key_value_heads", c.NumKeyValueHeads, false}, {"head_dim", c.HeadDim, false},
		{"rotary_dim", c.RotaryDim, true}, {"linear_num_key_heads", c.LinearNumKeyHeads, true},
		{"linear_num_value_heads", c.LinearNumValueHeads, true}, {"linear_key_head_dim", c.LinearKeyHeadDim, true},
		{"linear_value_head_dim", c.LinearValueHeadDim, true}, {"linear_conv_kernel_dim", c.LinearConvKernelDim, true},
		{"num_experts", c.NumExperts, false}, {"num_experts_per_tok", c.NumExpertsPerTok, false},
		{"moe_intermediate_size", c.MoeIntermediateSize, false},
		{"shared_expert_intermediate_size", c.SharedExpertIntermediateSize, true},
		{"max_position_embeddings", c.MaxPositionEmbeddings, true},
		{"intermediate_size", c.IntermediateSize, true}, {"n_group", c.NGroup, true}, {"topk_group", c.TopKGroup, true},
	} {
		if d.v > maxDim || d.v < 0 || d.v == 0 && !d.zero {
			want := "a positive integer"
			if d.zero {
				want = "a non-negative integer"
			}
			return fmt.Errorf("%s is %d, want %s at most %d", d.name, d.v, want, maxDim)
		}
	}
	switch {
	case len(c.LayerTypes) != c.NumHiddenLayers:
		return fmt.Errorf("layer_types has %d entries, num_hidden_layers is %d", len(c.LayerTypes), c.NumHiddenLayers)
	case c.NumAttentionHeads%c.NumKeyValueHeads != 0:
		return fmt.Errorf("num_attention_heads %d is not a multiple of num_key_value_heads %d", c.NumAttentionHeads, c.NumKeyValueHeads)
	case c.NumExpertsPerTok > c.NumExperts:
		return fmt.Errorf("num_experts_per_tok %d exceeds num_experts %d", c.NumExpertsPerTok, c.NumExperts)
	case c.RotaryDim%2 != 0 || c.RotaryDim > c.HeadDim:
		return fmt.Errorf("rotary dim %d (head_dim %d x partial_rotary_factor %g) must be even and at most head_dim", c.RotaryDim, c.HeadDim, c.PartialRotaryFactor)
	case c.MLPTypes != nil && len(c.MLPTypes) != c.NumHiddenLayers:
		return fmt.Errorf("mlp_types has %d entries, num_hidden_layers is %d", len(c.MLPTypes), c.NumHiddenLayers)
	}
	for i, t := range c.LayerTypes {
		if t != LinearAttention && t != FullAttention {
			return fmt.Errorf("layer_types[%d] is %q, want %q or %q", i, t, LinearAttention, FullAttention)
		}
	}
	for i, t := range c.MLPTypes {
		if t != MLPMoE && t != MLPDense {
			return fmt.Errorf("mlp_types[%d] is %q, want %q or %q", i, t, MLPMoE, MLPDense)
		}
		if t == MLPDense && c.IntermediateSize <= 0 {
			return fmt.Errorf("layer %d is dense but intermediate_size is %d", i, c.IntermediateSize)
		}
	}
	return fam.validate(c)
}

func appendUnique(s []int, v int) []int {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// reader pulls typed fields out of a JSON object, keeping the first error.
type reader struct {
	name   string
	fields map[string]json.RawMessage
	err    error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%s: "+format, append([]any{r.name}, args...)...)
	}
}

// opt decodes key into v if present and not null.
func (r *reader) opt(key string, v any) bool {
	raw, ok := r.fields[key]
	if !ok || string(raw) == "null" {
		return false
	}
	if err := json.Unmarshal(raw, v); err != nil {
		r.fail("field %s: %v", key, err)
		return false
	}
	return true
}

func (r *reader) posInt(key string) int {
	var f float64
	if !r.opt(key, &f) {
		r.fail("missing field %s (a positive integer)", key)
		return 0
	}
	if f <= 0 || f != math.Trunc(f) {
		r.fail("field %s is %v, want a positive integer", key, f)
		return 0
	}
	return int(f)
}

func (r *reader) intOr(key string, def int) int {
	var f float64
	if !r.opt(key, &f) {
		return def
	}
	if f < 0 || f != math.Trunc(f) {
		r.fail("field %s is %v, want a non-negative integer", key, f)
	}
	return int(f)
}

func (r *reader) floatOr(key string, def float64) float64 {
	var f float64
	if !r.opt(key, &f) {
		return def
	}
	return f
}

func (r *reader) boolOr(key string, def bool) bool {
	var b bool
	if !r.opt(key, &b) {
		return def
	}
	return b
}

func (r *reader) str(key, def string) string {
	var s string
	if !r.opt(key, &s) {
		return def
	}
	return s
}

// ids reads a token id given as a number or a list of numbers.
func (r *reader) ids(key string) []int {
	raw, ok := r.fields[key]
	if !ok || string(raw) == "null" {
		return nil
	}
	var one int
	if json.Unmarshal(raw, &one) == nil {
		return []int{one}
	}
	var many []int
	if err := json.Unmarshal(raw, &many); err != nil {
		r.fail("field %s: want a token id or a list of ids", key)
	}
	return many
}
