package format

import (
	"slices"
	"strings"
	"testing"
)

const qwen3NextBase = `"model_type": "qwen3_next", "architectures": ["Qwen3NextForCausalLM"], "hidden_size": 64,
 "num_hidden_layers": 4, "vocab_size": 100, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
 "linear_num_key_heads": 2, "linear_num_value_heads": 4, "linear_key_head_dim": 16, "linear_value_head_dim": 16,
 "linear_conv_kernel_dim": 4, "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
 "shared_expert_intermediate_size": 32, "full_attention_interval": 4`

// TestQwen3NextConfig: a Qwen3-Next config reads as the Qwen3.5-MoE config of the same model —
// output-gated attention, rotary on a quarter of each head unless it says otherwise, layer types
// from full_attention_interval — and what the Qwen3.5 runtime cannot run is refused by field.
func TestQwen3NextConfig(t *testing.T) {
	c, err := parse(t, `{`+qwen3NextBase+`, "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": true, "attn_output_gate": false}`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{LinearAttention, LinearAttention, LinearAttention, FullAttention}
	if c.Architecture != ArchQwen35MoE || !c.AttnOutputGate || c.RotaryDim != 8 || !slices.Equal(c.LayerTypes, want) || c.MLPTypes != nil {
		t.Fatalf("config %+v", c)
	}
	q35 := strings.Replace(qwen3NextBase, `"qwen3_next"`, `"qwen3_5_moe"`, 1)
	ref, err := parse(t, `{`+q35+`, "partial_rotary_factor": 0.25}`)
	if err != nil {
		t.Fatal(err)
	}
	if s, r := Schema(&c), Schema(&ref); !slices.EqualFunc(s, r, func(a, b TensorSpec) bool {
		return a.Name == b.Name && slices.Equal(a.Shape, b.Shape) && a.NormShift == b.NormShift && a.Matrix == b.Matrix && a.Gate == b.Gate
	}) {
		t.Error("the Qwen3-Next schema is not Qwen3.5-MoE's")
	}
	for _, bad := range []struct{ js, want string }{
		{`, "mlp_only_layers": [2]`, "mlp_only_layers"},
		{`, "decoder_sparse_step": 2`, "decoder_sparse_step is 2"},
		{`, "norm_topk_prob": false`, "norm_topk_prob"},
		{`, "attention_bias": true`, "attention_bias"},
		{`, "hidden_act": "gelu"`, "hidden_act"},
		{`, "rope_parameters": {"rope_type": "yarn", "factor": 4}`, "rope_type"},
	} {
		if _, err := parse(t, `{`+qwen3NextBase+bad.js+`}`); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: error %v, want one naming %q", bad.js, err, bad.want)
		}
	}
	for _, field := range []string{`"head_dim": 32`, `"shared_expert_intermediate_size": 32`, `"full_attention_interval": 4`} {
		js := `{` + strings.Replace(qwen3NextBase, ", "+field, "", 1) + `}`
		js = strings.Replace(js, field+",", "", 1)
		name, _, _ := strings.Cut(strings.Trim(field, `"`), `"`)
		if _, err := parse(t, js); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without %s: error %v", name, err)
		}
	}
}

// TestSupportedFamiliesOnce: Qwen3-Next is named by its model_type, and its arch (Qwen3.5-MoE's)
// is listed once.
func TestSupportedFamiliesOnce(t *testing.T) {
	if s := SupportedFamilies(); !strings.Contains(s, "qwen3_next (Qwen3-Next)") || !strings.Contains(s, "qwen3_5_moe (Qwen3.5-MoE)") {
		t.Errorf("SupportedFamilies %q", s)
	}
	a := Architectures()
	if n := len(slices.DeleteFunc(slices.Clone(a), func(s string) bool { return s != ArchQwen35MoE })); n != 1 {
		t.Errorf("Architectures %v lists %s twice", a, ArchQwen35MoE)
	}
}

// TestHugeLayerCountNotBuilt: layer types derived from full_attention_interval are not built for a
// layer count validation refuses (a hostile config once meant an allocation of 2^40 entries).
func TestHugeLayerCountNotBuilt(t *testing.T) {
	js := `{` + strings.Replace(qwen3NextBase, `"num_hidden_layers": 4`, `"num_hidden_layers": 1099511627776`, 1) + `}`
	if _, err := parse(t, js); err == nil || !strings.Contains(err.Error(), "num_hidden_layers") {
		t.Fatalf("err = %v, want num_hidden_layers refused", err)
	}
}
