package format

import "fmt"

// qwen3MoEFamily is Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B, Qwen3-Coder-480B-A35B): GQA with
// per-head q/k RMSNorm, full rotary, softmax top-k routing, no shared expert, optional dense
// layers (mlp_only_layers, decoder_sparse_step).
var qwen3MoEFamily = &family{
	arch:          ArchQwen3MoE,
	name:          "Qwen3-MoE",
	modelTypes:    []string{"qwen3_moe"},
	partialRotary: 1,
	parse:         parseQwen3MoE,
	validate:      validateQwen3MoE,
	schema:        qwen3MoESchema,
}

func parseQwen3MoE(r *reader, c *Config) {
	// transformers 5 writes num_local_experts; released configs say num_experts.
	if c.NumExperts = r.intOr("num_experts", 0); c.NumExperts == 0 {
		c.NumExperts = r.posInt("num_local_experts")
	}
	c.NormTopKProb = r.boolOr("norm_topk_prob", false) // transformers' default
	c.IntermediateSize = r.intOr("intermediate_size", 0)
	if r.boolOr("attention_bias", false) {
		r.fail("attention_bias is true: fmoe runs Qwen3-MoE attention without biases (as every released checkpoint has it)")
	}
	if r.boolOr("use_sliding_window", false) {
		r.fail("use_sliding_window is true: fmoe does not implement sliding-window attention")
	}
	if c.LayerTypes = allFull(c.NumHiddenLayers); c.LayerTypes == nil {
		return // Validate names the layer count
	}
	var only []int
	r.opt("mlp_only_layers", &only)
	step := r.intOr("decoder_sparse_step", 1)
	if step <= 0 {
		r.fail("decoder_sparse_step is %d, want a positive integer", step)
		return
	}
	mlpOnly := make([]bool, c.NumHiddenLayers)
	for _, l := range only {
		if l < 0 || l >= c.NumHiddenLayers {
			r.fail("mlp_only_layers names layer %d of %d", l, c.NumHiddenLayers)
			return
		}
		mlpOnly[l] = true
	}
	types := make([]string, c.NumHiddenLayers)
	dense := false
	for l := range types {
		// transformers' Qwen3MoeDecoderLayer: sparse iff not MLP-only and (l+1) % step == 0.
		types[l] = MLPMoE
		if mlpOnly[l] || (l+1)%step != 0 {
			types[l], dense = MLPDense, true
		}
	}
	if dense {
		c.MLPTypes = types
	} else {
		c.IntermediateSize = 0 // no layer has the dense MLP it sizes
	}
}

func validateQwen3MoE(c *Config) error {
	if err := checkAllFull(c); err != nil {
		return err
	}
	if c.SharedExpertIntermediateSize != 0 || c.AttentionBias || c.NGroup != 0 || c.LinearNumKeyHeads != 0 || c.MLA != nil || c.Yarn != nil {
		return fmt.Errorf("%s has no shared expert, attention bias, expert groups, linear or latent attention or YaRN rotary, but the config sets one", c.Architecture)
	}
	return nil
}

func qwen3MoESchema(c *Config) []TensorSpec {
	H := c.HiddenSize
	return schemaOf(c, func(add func(string, ...int) *TensorSpec, l int) {
		gqaSchema(add, LayerPrefix(l), c, false, true)
	}, func(add func(string, ...int) *TensorSpec, l int) {
		p := LayerPrefix(l) + "mlp."
		if c.Dense(l) {
			denseMLPSchema(add, p, c.IntermediateSize, H)
			return
		}
		t := add(p+"gate.weight", c.NumExperts, H)
		t.Matrix, t.Gate = true, true
	})
}
