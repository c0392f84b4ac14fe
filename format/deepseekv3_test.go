package format

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// dsBase is a DeepSeek-V3 config as the hub spells it: rope_scaling with "type", rope_theta at
// top level, no head_dim (DeepSeek's own configs leave it out).
const dsBase = `"model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"], "hidden_size": 64,
 "num_hidden_layers": 3, "vocab_size": 100, "num_attention_heads": 4, "num_key_value_heads": 4,
 "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "intermediate_size": 128,
 "n_shared_experts": 1, "n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5, "first_k_dense_replace": 1,
 "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
 "num_nextn_predict_layers": 1, "max_position_embeddings": 4096, "rope_theta": 10000`

func TestDeepseekV3Config(t *testing.T) {
	c, err := parse(t, `{`+dsBase+`, "q_lora_rank": 24,
	 "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 64, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}}`)
	if err != nil {
		t.Fatal(err)
	}
	m := c.MLA
	if m == nil || m.QLoraRank != 24 || m.KVLoraRank != 32 || !m.RopeInterleave || c.HeadDim != 24 || c.RotaryDim != 8 || c.NumKeyValueHeads != 4 {
		t.Fatalf("config %+v, mla %+v", c, m)
	}
	if y := c.Yarn; y == nil || y.Factor != 40 || y.OriginalMaxPositions != 64 || y.MscaleAllDim != 1 || c.RopeTheta != 10000 {
		t.Fatalf("rope_scaling read as %+v, theta %v", c.Yarn, c.RopeTheta)
	}
	if !slices.Equal(c.MLPTypes, []string{MLPDense, MLPMoE, MLPMoE}) || c.SharedExpertIntermediateSize != 32 {
		t.Fatalf("mlp_types %v, shared %d", c.MLPTypes, c.SharedExpertIntermediateSize)
	}
	names := map[string][]int{}
	for _, s := range Schema(&c) {
		names[s.Name] = s.Shape
	}
	for n, shape := range map[string][]int{
		"model.layers.0.self_attn.q_a_proj.weight":           {24, 64},
		"model.layers.0.self_attn.q_a_layernorm.weight":      {24},
		"model.layers.0.self_attn.q_b_proj.weight":           {4 * 24, 24},
		"model.layers.0.self_attn.kv_a_proj_with_mqa.weight": {32 + 8, 64},
		"model.layers.0.self_attn.kv_a_layernorm.weight":     {32},
		"model.layers.0.self_attn.kv_b_proj.weight":          {4 * (16 + 16), 32},
		"model.layers.0.self_attn.o_proj.weight":             {64, 4 * 16},
		"model.layers.0.mlp.gate_proj.weight":                {128, 64},
		"model.layers.1.mlp.gate.e_score_correction_bias":    {8},
		"model.layers.2.mlp.shared_experts.down_proj.weight": {64, 32},
	} {
		if !slices.Equal(names[n], shape) {
			t.Errorf("%s: shape %v, want %v", n, names[n], shape)
		}
	}
	if _, ok := names["model.layers.0.self_attn.q_proj.weight"]; ok {
		t.Error("a q LoRA model lists q_proj")
	}
	// transformers 5's spelling, q_lora_rank null, no scaling: q_proj and plain rotary.
	c, err = parse(t, `{`+dsBase+`, "q_lora_rank": null, "rope_interleave": false, "rope_parameters": {"rope_type": "default", "rope_theta": 50000}}`)
	if err != nil {
		t.Fatal(err)
	}
	if c.MLA.QLoraRank != 0 || c.MLA.RopeInterleave || c.Yarn != nil || c.RopeTheta != 50000 {
		t.Fatalf("config %+v, mla %+v", c, c.MLA)
	}
	names = map[string][]int{}
	for _, s := range Schema(&c) {
		names[s.Name] = s.Shape
	}
	if !slices.Equal(names["model.layers.2.self_attn.q_proj.weight"], []int{4 * 24, 64}) || names["model.layers.2.self_attn.q_a_proj.weight"] != nil {
		t.Errorf("q_lora_rank null: q_proj %v, q_a_proj %v", names["model.layers.2.self_attn.q_proj.weight"], names["model.layers.2.self_attn.q_a_proj.weight"])
	}
	// Left out: transformers' DeepseekV3Config defaults (q LoRA 1536, 3 dense layers, 8 groups,
	// top 4 of them).
	c, err = parse(t, `{`+strings.Replace(strings.Replace(dsBase, `"n_group": 4, "topk_group": 2, `, ``, 1), `"first_k_dense_replace": 1,`, ``, 1)+`, "n_routed_experts": 16}`)
	if err != nil {
		t.Fatal(err)
	}
	if c.MLA.QLoraRank != 1536 || c.NGroup != 8 || c.TopKGroup != 4 || !slices.Equal(c.MLPTypes, []string{MLPDense, MLPDense, MLPDense}) {
		t.Fatalf("defaults: q LoRA %d, groups %d/%d, mlp_types %v", c.MLA.QLoraRank, c.NGroup, c.TopKGroup, c.MLPTypes)
	}
	// No factor: transformers takes the context's ratio.
	c, err = parse(t, `{`+dsBase+`, "rope_scaling": {"rope_type": "yarn", "original_max_position_embeddings": 1024}}`)
	if err != nil || c.Yarn.Factor != 4 {
		t.Fatalf("factor from the context ratio: %+v, %v", c.Yarn, err)
	}
	for _, bad := range []struct{ js, want string }{
		{`, "attention_bias": true`, "attention_bias"},
		{`, "v_head_dim": 32`, "v_head_dim 32"},
		{`, "qk_rope_head_dim": 7`, "rotary dim 7"},
		{`, "kv_lora_rank": 0`, "kv_lora_rank"},
		{`, "n_group": 3`, "n_group 3"},
		{`, "rope_scaling": {"type": "yarn", "factor": -2, "original_max_position_embeddings": 64}`, "factor"},
		{`, "rope_scaling": {"type": "yarn", "factor": 4, "original_max_position_embeddings": 64, "mscale_all_dim": -1}`, "mscale_all_dim"},
		{`, "rope_scaling": {"type": "longrope", "factor": 4}`, `"longrope"`},
		{`, "rope_parameters": {"rope_type": "dynamic", "factor": 4}`, `"dynamic"`},
	} {
		// A later key wins in Go's JSON decoding, so bad.js overrides dsBase's field.
		js := `{` + dsBase + bad.js + `}`
		if _, err := parse(t, js); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: error %v, want one naming %q", bad.js, err, bad.want)
		}
	}
}

// TestDeepseekV3Fixture: the transformers fixture's config (rope_parameters with yarn, q LoRA,
// MTP layer) reads as the family it is, and its MTP layer is not part of the schema.
func TestDeepseekV3Fixture(t *testing.T) {
	raw, err := os.ReadFile("../testdata/arch/deepseek_v3/hf/config.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("config.json", raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &cfg
	if c.Architecture != ArchDeepseekV3 || c.MLA.QLoraRank != 96 || c.Yarn == nil || c.Yarn.Factor != 40 {
		t.Fatalf("config %+v", c)
	}
	for _, s := range Schema(c) {
		if strings.HasPrefix(s.Name, LayerPrefix(c.NumHiddenLayers)) {
			t.Errorf("schema lists the MTP layer's %s", s.Name)
		}
	}
}
