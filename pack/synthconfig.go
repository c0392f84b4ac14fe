package pack

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/fmoe/fmoe/format"
)

// familyConfig is the config.json of a Qwen3-MoE, GLM-4.5 or DeepSeek-V3 preset, in the Hugging Face layout
// transformers writes. Values that do not change the model's size (rope, norms, routing
// constants) are those of the families' test fixtures.
func familyConfig(p *Preset, layers int) map[string]any {
	c := map[string]any{
		"hidden_size": p.Hidden, "num_hidden_layers": layers, "vocab_size": p.Vocab,
		"num_attention_heads": p.Heads, "num_key_value_heads": p.KVHeads, "head_dim": p.HeadDim,
		"num_experts_per_tok": p.TopK, "moe_intermediate_size": p.MoeInter, "intermediate_size": p.DenseInter,
		"norm_topk_prob": true, "rms_norm_eps": 1e-6, "tie_word_embeddings": false, "eos_token_id": 1,
	}
	dense := min(p.DenseLayers, layers)
	switch p.Family {
	case format.ArchQwen3MoE:
		only := []int{}
		for l := 0; l < dense; l++ {
			only = append(only, l)
		}
		c["architectures"] = []string{"Qwen3MoeForCausalLM"}
		c["model_type"] = "qwen3_moe"
		c["num_experts"] = p.Experts
		c["mlp_only_layers"], c["decoder_sparse_step"] = only, 1
		c["rope_parameters"] = map[string]any{"rope_type": "default", "rope_theta": 1e6}
		c["max_position_embeddings"] = 32768
	case format.ArchGLM4MoE:
		c["architectures"] = []string{"Glm4MoeForCausalLM"}
		c["model_type"] = "glm4_moe"
		c["n_routed_experts"], c["n_shared_experts"] = p.Experts, p.SharedInter/p.MoeInter
		c["first_k_dense_replace"] = dense
		// Grouped routing and q/k norm, which the transformers fixture leaves out, so that a
		// synthetic model runs them (n_group must divide the experts).
		c["n_group"], c["topk_group"], c["routed_scaling_factor"] = 4, 2, 2.5
		c["attention_bias"], c["use_qk_norm"] = true, true
		c["rope_parameters"] = map[string]any{"rope_type": "default", "rope_theta": 1e6, "partial_rotary_factor": 0.5}
		c["max_position_embeddings"] = 131072
	case format.ArchDeepseekV3:
		c["architectures"] = []string{"DeepseekV3ForCausalLM"}
		c["model_type"] = "deepseek_v3"
		c["n_routed_experts"], c["n_shared_experts"] = p.Experts, p.SharedInter/p.MoeInter
		c["first_k_dense_replace"] = dense
		c["n_group"], c["topk_group"], c["routed_scaling_factor"] = 4, 2, 2.5
		// What the transformers fixture leaves out: q_proj without LoRA, rotary pairs not
		// interleaved, v_head_dim below qk_nope_head_dim, a YaRN attention_factor other than 1
		// (mscale differs from mscale_all_dim), and the hub's spelling of the rotary block.
		c["q_lora_rank"], c["kv_lora_rank"] = nil, 48
		c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"] = p.HeadDim*3/4, p.HeadDim/4, p.HeadDim/2
		c["rope_interleave"] = false
		c["rope_theta"] = 10000.0
		c["rope_scaling"] = map[string]any{"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 64,
			"beta_fast": 32.0, "beta_slow": 1.0, "mscale": 0.707, "mscale_all_dim": 1.0}
		c["max_position_embeddings"] = 2560
	}
	for k, v := range p.Config {
		c[k] = v
	}
	return c
}

// addFamilyMLXQuantization is the quantization block mlx-lm writes for a Qwen3-MoE, GLM-4.5 or
// DeepSeek-V3 conversion: 4 bits, group 64, and an 8-bit entry for each router gate (the
// layout pack.TestFamilyMLXLayout checks the packer reads).
func addFamilyMLXQuantization(cfg map[string]any, c *format.Config) {
	q := map[string]any{"group_size": 64, "bits": 4, "mode": "affine"}
	for _, s := range format.Schema(c) {
		if s.Matrix && s.Gate {
			q[strings.TrimSuffix(s.Name, ".weight")] = map[string]any{"group_size": 64, "bits": 8}
		}
	}
	cfg["quantization"] = q
}

// mlxGroupsFit refuses an MLX layout for a shape whose matrices do not split into whole groups
// of 64 inputs (the tiny DeepSeek-V3 shape's 48-wide latent): mlx-lm could not have written it.
func mlxGroupsFit(c *format.Config, preset string) error {
	for _, s := range format.Schema(c) {
		if s.Matrix && s.Shape[1]%64 != 0 {
			return fmt.Errorf("--layout mlx-4bit: %s's %s has %d inputs, not a multiple of the group size 64 (want --layout hf)", preset, s.Name, s.Shape[1])
		}
	}
	if c.MoeIntermediateSize%64 != 0 || c.HiddenSize%64 != 0 {
		return fmt.Errorf("--layout mlx-4bit: %s's experts are not a whole number of groups of 64 (want --layout hf)", preset)
	}
	return nil
}

// SynthLayout is the layout synth writes for a preset when none is asked for: mlx-4bit, the
// layout of most published MoE checkpoints, unless the preset's shapes do not split into
// mlx-lm's groups of 64 (deepseek-v3-tiny), then hf.
func SynthLayout(preset string) (string, error) {
	p := FindPreset(preset)
	if p == nil {
		return "", fmt.Errorf("unknown preset %q (have %s)", preset, strings.Join(PresetNames(), ", "))
	}
	raw, _ := json.Marshal(synthConfig(p, p.Layers, true))
	c, err := format.ParseConfig("synth config", raw, nil)
	if err != nil {
		return "", err
	}
	if mlxGroupsFit(&c, p.Name) != nil {
		return "hf", nil
	}
	return "mlx-4bit", nil
}

// FindPreset is the preset of that name, or nil.
func FindPreset(name string) *Preset {
	for i := range Presets {
		if Presets[i].Name == name {
			return &Presets[i]
		}
	}
	return nil
}
