package format

// qwen3NextFamily is Qwen3-Next (Qwen3-Next-80B-A3B, Qwen3-Coder-Next): the model Qwen3.5-MoE
// grew from. transformers' modeling_qwen3_next.py computes exactly what Qwen3.5-MoE does —
// GatedDeltaNet and output-gated full attention, zero-centred (1+w) norms with a plain-w gated
// norm, partial rotary, a softmax router renormalised over the top k, a sigmoid-gated shared
// expert — but stores the DeltaNet input projections fused and interleaved per key head
// (in_proj_qkvz, in_proj_ba). The packer splits those into Qwen3.5's four (pack/fused.go), so a
// Qwen3-Next pack is a Qwen3.5-MoE pack: its arch is ArchQwen35MoE and the runtime is Qwen3.5's.
// What Qwen3-Next's config can say that Qwen3.5-MoE cannot run is refused here.
var qwen3NextFamily = &family{
	arch:          ArchQwen35MoE,
	name:          "Qwen3-Next",
	modelTypes:    []string{ModelTypeQwen3Next},
	partialRotary: 0.25, // Qwen3NextConfig's default
	parse:         parseQwen3Next,
	validate:      validateQwen35,
	schema:        qwen35Schema,
}

// ModelTypeQwen3Next is Qwen3-Next's config.json model_type: the packer reads its fused projections.
const ModelTypeQwen3Next = "qwen3_next"

func parseQwen3Next(r *reader, c *Config) {
	if _, ok := r.fields["head_dim"]; !ok {
		// transformers defaults it to 256, not hidden_size / num_attention_heads as ParseConfig does.
		r.fail("missing field head_dim (Qwen3-Next configs state it; transformers' default is 256)")
	}
	parseQwen35(r, c)
	// Qwen3NextAttention always gates its output; the config has no switch for it.
	c.AttnOutputGate = true
	c.SharedExpertIntermediateSize = r.posInt("shared_expert_intermediate_size")
	if act := r.str("hidden_act", "silu"); act != "silu" {
		r.fail("hidden_act is %q: fmoe runs Qwen3-Next with silu (as every released checkpoint has it)", act)
	}
	if r.boolOr("attention_bias", false) {
		r.fail("attention_bias is true: fmoe runs Qwen3-Next attention without biases (as every released checkpoint has it)")
	}
	if !r.boolOr("norm_topk_prob", true) {
		r.fail("norm_topk_prob is false: fmoe runs Qwen3-Next's router renormalised over the top k (norm_topk_prob true, as every released checkpoint has it)")
	}
	qwen3NextAllSparse(r, c)
}

// qwen3NextAllSparse refuses the dense layers Qwen3NextDecoderLayer builds (a layer in
// mlp_only_layers, or one where (l+1) % decoder_sparse_step != 0): the Qwen3.5 runtime has
// routed experts in every layer, and every released Qwen3-Next has them too.
func qwen3NextAllSparse(r *reader, c *Config) {
	var only []int
	r.opt("mlp_only_layers", &only)
	if len(only) > 0 {
		r.fail("mlp_only_layers is %v: fmoe runs Qwen3-Next with routed experts in every layer (mlp_only_layers empty, as every released checkpoint has it)", only)
		return
	}
	// With a step other than 1, layer 0 ((0+1) % step != 0) is already dense.
	if step := r.intOr("decoder_sparse_step", 1); step != 1 {
		r.fail("decoder_sparse_step is %d, which makes layer 0 dense: fmoe runs Qwen3-Next with routed experts in every layer (decoder_sparse_step 1)", step)
	}
}
