package format

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestManifestBeforeFamilies: a manifest written before the later families
// (the tiny hf pack at 16 bits, by the build before them) still decodes and
// validates, and re-encodes to the same bytes, so none of the new fields
// leaks into a Qwen3.5 manifest.
func TestManifestBeforeFamilies(t *testing.T) {
	old, err := os.ReadFile("../testdata/manifests/qwen35-tiny-hf16-before-families.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(m); err != nil {
		t.Fatal(err)
	}
	if m.Config.Architecture != ArchQwen35MoE || m.Config.MLPTypes != nil || m.Config.LayerExperts(0) != m.Config.NumExperts {
		t.Fatalf("old manifest read as %q, mlp_types %v", m.Config.Architecture, m.Config.MLPTypes)
	}
	again, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, old) {
		t.Fatal("re-encoding the old manifest changed its bytes")
	}
}

func parse(t *testing.T, js string) (Config, error) {
	t.Helper()
	return ParseConfig("config.json", []byte(js), nil)
}

const qwen3MoEBase = `"model_type": "qwen3_moe", "hidden_size": 64, "num_hidden_layers": 4, "vocab_size": 100,
 "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_experts": 8,
 "num_experts_per_tok": 2, "moe_intermediate_size": 32, "intermediate_size": 128`

func TestQwen3MoEConfig(t *testing.T) {
	c, err := parse(t, `{`+qwen3MoEBase+`, "mlp_only_layers": [0], "decoder_sparse_step": 2, "norm_topk_prob": true}`)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse iff not MLP-only and (l+1) % 2 == 0: layers 1 and 3.
	if want := []string{MLPDense, MLPMoE, MLPDense, MLPMoE}; !slices.Equal(c.MLPTypes, want) {
		t.Fatalf("mlp_types %v, want %v", c.MLPTypes, want)
	}
	if !c.NormTopKProb || c.AttnOutputGate || c.RotaryDim != 16 || c.LayerExperts(0) != 0 || c.LayerExperts(1) != 8 {
		t.Fatalf("config %+v", c)
	}
	// Dense layers list their MLP, sparse ones the router; nothing zero-centred.
	names := map[string]bool{}
	for _, s := range Schema(&c) {
		names[s.Name] = true
		if s.NormShift {
			t.Errorf("%s is marked zero-centred", s.Name)
		}
	}
	for _, n := range []string{"model.layers.0.mlp.gate_proj.weight", "model.layers.1.mlp.gate.weight", "model.layers.1.self_attn.q_norm.weight"} {
		if !names[n] {
			t.Errorf("schema lacks %s", n)
		}
	}
	if names["model.layers.0.mlp.gate.weight"] || names["model.layers.1.mlp.gate_proj.weight"] {
		t.Error("schema mixes dense and sparse tensors")
	}
	// All sparse, transformers' defaults: no mlp_types, no renormalisation.
	c, err = parse(t, `{`+strings.Replace(qwen3MoEBase, `"num_experts"`, `"num_local_experts"`, 1)+`}`)
	if err != nil {
		t.Fatal(err)
	}
	if c.MLPTypes != nil || c.NormTopKProb || c.NumExperts != 8 || c.IntermediateSize != 0 {
		t.Fatalf("defaults: mlp_types %v, norm_topk_prob %v, experts %d", c.MLPTypes, c.NormTopKProb, c.NumExperts)
	}
	for _, bad := range []struct{ js, want string }{
		{`, "attention_bias": true`, "attention_bias"},
		{`, "use_sliding_window": true`, "sliding-window"},
		{`, "mlp_only_layers": [4]`, "mlp_only_layers names layer 4"},
		{`, "decoder_sparse_step": 0`, "decoder_sparse_step"},
		{`, "intermediate_size": 0, "mlp_only_layers": [1]`, "intermediate_size"},
	} {
		if _, err := parse(t, `{`+qwen3MoEBase+bad.js+`}`); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: error %v, want one naming %q", bad.js, err, bad.want)
		}
	}
}

const glmBase = `"model_type": "glm4_moe", "hidden_size": 64, "num_hidden_layers": 3, "vocab_size": 100,
 "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "n_routed_experts": 8,
 "num_experts_per_tok": 2, "moe_intermediate_size": 32, "intermediate_size": 128`

func TestGLM4MoEConfig(t *testing.T) {
	c, err := parse(t, `{`+glmBase+`, "n_shared_experts": 2, "n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5,
		"attention_bias": true, "use_qk_norm": true, "first_k_dense_replace": 2}`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{MLPDense, MLPDense, MLPMoE}; !slices.Equal(c.MLPTypes, want) {
		t.Fatalf("mlp_types %v, want %v", c.MLPTypes, want)
	}
	if c.SharedExpertIntermediateSize != 64 || c.NGroup != 4 || c.TopKGroup != 2 || c.RoutedScalingFactor != 2.5 ||
		!c.NormTopKProb || c.RotaryDim != 8 {
		t.Fatalf("config %+v", c)
	}
	names := map[string][]int{}
	for _, s := range Schema(&c) {
		names[s.Name] = s.Shape
	}
	for n, shape := range map[string][]int{
		"model.layers.0.self_attn.q_proj.bias":               {64},
		"model.layers.0.self_attn.k_norm.weight":             {16},
		"model.layers.1.mlp.down_proj.weight":                {64, 128},
		"model.layers.2.mlp.gate.e_score_correction_bias":    {8},
		"model.layers.2.mlp.shared_experts.up_proj.weight":   {64, 64},
		"model.layers.2.mlp.shared_experts.down_proj.weight": {64, 64},
	} {
		if !slices.Equal(names[n], shape) {
			t.Errorf("%s: shape %v, want %v", n, names[n], shape)
		}
	}
	// transformers' defaults: partial rotary 0.5, one dense layer, one shared expert, no bias.
	c, err = parse(t, `{`+glmBase+`}`)
	if err != nil {
		t.Fatal(err)
	}
	if c.RotaryDim != 8 || !slices.Equal(c.MLPTypes, []string{MLPDense, MLPMoE, MLPMoE}) || c.SharedExpertIntermediateSize != 32 || c.AttentionBias {
		t.Fatalf("defaults: %+v", c)
	}
	for _, bad := range []struct{ js, want string }{
		{`, "n_group": 3`, "n_group 3"},
		{`, "n_group": 2, "topk_group": 3`, "topk_group 3"},
		{`, "routed_scaling_factor": 0`, "routed_scaling_factor"},
	} {
		if _, err := parse(t, `{`+glmBase+bad.js+`}`); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: error %v, want one naming %q", bad.js, err, bad.want)
		}
	}
}

// TestUnknownFamily: a checkpoint of a family fmoe does not run is refused
// with the list of those it runs.
func TestUnknownFamily(t *testing.T) {
	_, err := parse(t, `{"model_type": "mixtral", "architectures": ["MixtralForCausalLM"], "hidden_size": 64}`)
	if err == nil {
		t.Fatal("a mixtral config parsed")
	}
	for _, want := range []string{`"mixtral"`, "MixtralForCausalLM", "qwen3_5_moe (Qwen3.5-MoE)", "qwen3_moe (Qwen3-MoE)", "glm4_moe (GLM-4.5 MoE)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	c := Config{Architecture: "mixtral"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "glm4_moe") {
		t.Errorf("Validate of an unknown architecture: %v", err)
	}
}

// TestDenseLayerFile: a dense layer's expert file is empty, and a manifest
// that gives it experts (or takes a sparse layer's away) is refused.
func TestDenseLayerFile(t *testing.T) {
	m := manifestOf(t, "../testdata/arch/glm4_moe/hf/config.json")
	if err := Validate(m); err != nil {
		t.Fatal(err)
	}
	set := &m.Experts[0]
	if set.Layers[0].Size != 0 || len(set.Layers[1].CRC32C) != m.Config.NumExperts {
		t.Fatalf("layers %+v", set.Layers[:2])
	}
	dense, sparse := set.Layers[0], set.Layers[1]
	set.Layers[0] = sparse
	set.Layers[0].File = LayerFileName(0)
	if err := Validate(m); err == nil || !strings.Contains(err.Error(), "layer_00.bin") {
		t.Errorf("experts in the dense layer: %v", err)
	}
	set.Layers[0], set.Layers[1] = dense, dense
	set.Layers[1].File = LayerFileName(1)
	if err := Validate(m); err == nil || !strings.Contains(err.Error(), "layer_01.bin") {
		t.Errorf("no experts in a sparse layer: %v", err)
	}
}

// TestFamilyConfigHugeLayers: a layer count past the bound is refused
// before any per-layer slice is allocated.
func TestFamilyConfigHugeLayers(t *testing.T) {
	for _, base := range []string{qwen3MoEBase, glmBase, dsBase} {
		js := `{` + strings.Replace(strings.Replace(base, `"num_hidden_layers": 4`, `"num_hidden_layers": 1000000000000`, 1), `"num_hidden_layers": 3`, `"num_hidden_layers": 1000000000000`, 1) + `}`
		if _, err := parse(t, js); err == nil || !strings.Contains(err.Error(), "num_hidden_layers") {
			t.Errorf("error %v, want one naming num_hidden_layers", err)
		}
	}
}
