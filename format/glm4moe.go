package format

import (
	"fmt"
	"math"
)

// glm4MoEFamily is GLM-4.5 MoE (GLM-4.5, 4.6, 4.7, 4.5-Air): GQA with q/k/v biases, optional q/k
// norm and partial rotary; the first first_k_dense_replace layers dense; the others route by
// sigmoid scores with a correction bias (for choosing only), grouped top-k and a scaling factor,
// beside an ungated shared expert.
var glm4MoEFamily = &family{
	arch:          ArchGLM4MoE,
	name:          "GLM-4.5 MoE",
	modelTypes:    []string{"glm4_moe"},
	partialRotary: 0.5, // transformers' Glm4MoeConfig default
	parse:         parseGLM4MoE,
	validate:      validateGLM4MoE,
	schema:        glm4MoESchema,
}

// The defaults are transformers' Glm4MoeConfig's.
func parseGLM4MoE(r *reader, c *Config) {
	c.AttentionBias = r.boolOr("attention_bias", false)
	c.UseQKNorm = r.boolOr("use_qk_norm", false)
	parseGroupedMoE(r, c, 1, 1, 1)
}

// parseGroupedMoE reads the MLP fields GLM-4.5 and DeepSeek-V3 share: routed and shared experts,
// the grouped sigmoid router and the first_k_dense_replace dense layers (the family's defaults
// for the last three, where the config leaves them out); every layer is full attention.
func parseGroupedMoE(r *reader, c *Config, denseK, nGroup, topkGroup int) {
	c.NumExperts = r.posInt("n_routed_experts")
	c.SharedExpertIntermediateSize = r.intOr("n_shared_experts", 1) * c.MoeIntermediateSize
	c.RoutedScalingFactor = r.floatOr("routed_scaling_factor", 1)
	c.NGroup = r.intOr("n_group", nGroup)
	c.TopKGroup = r.intOr("topk_group", topkGroup)
	c.NormTopKProb = r.boolOr("norm_topk_prob", true)
	c.IntermediateSize = r.intOr("intermediate_size", 0)
	if c.LayerTypes = allFull(c.NumHiddenLayers); c.LayerTypes == nil {
		return // Validate names the layer count
	}
	if k := r.intOr("first_k_dense_replace", denseK); k <= 0 {
		c.IntermediateSize = 0 // no layer has the dense MLP it sizes
	} else {
		c.MLPTypes = make([]string, c.NumHiddenLayers)
		for l := range c.MLPTypes {
			c.MLPTypes[l] = MLPMoE
			if l < k {
				c.MLPTypes[l] = MLPDense
			}
		}
	}
}

func validateGLM4MoE(c *Config) error {
	if c.MLA != nil || c.Yarn != nil {
		return fmt.Errorf("%s has no latent attention or YaRN rotary, but the config sets one", c.Architecture)
	}
	return validateGroupedMoE(c)
}

// validateGroupedMoE checks the fields parseGroupedMoE reads.
func validateGroupedMoE(c *Config) error {
	if err := checkAllFull(c); err != nil {
		return err
	}
	switch {
	case c.NGroup <= 0 || c.NumExperts%c.NGroup != 0 || c.NumExperts/c.NGroup < 2:
		return fmt.Errorf("n_group %d: want a positive divisor of n_routed_experts %d leaving at least 2 experts per group", c.NGroup, c.NumExperts)
	case c.TopKGroup <= 0 || c.TopKGroup > c.NGroup:
		return fmt.Errorf("topk_group %d: want 1 to n_group (%d)", c.TopKGroup, c.NGroup)
	case !(c.RoutedScalingFactor > 0) || math.IsInf(c.RoutedScalingFactor, 0):
		return fmt.Errorf("routed_scaling_factor %v: want a positive number", c.RoutedScalingFactor)
	case c.LinearNumKeyHeads != 0:
		return fmt.Errorf("%s has no linear attention, but the config sets linear_num_key_heads", c.Architecture)
	}
	return nil
}

func glm4MoESchema(c *Config) []TensorSpec {
	return schemaOf(c, func(add func(string, ...int) *TensorSpec, l int) {
		gqaSchema(add, LayerPrefix(l), c, c.AttentionBias, c.UseQKNorm)
	}, groupedMoESchema(c))
}

// groupedMoESchema lists the MLP tensors of a layer of GLM-4.5 or DeepSeek-V3: a dense MLP, or
// the router with its correction bias and the shared experts.
func groupedMoESchema(c *Config) func(add func(string, ...int) *TensorSpec, l int) {
	H := c.HiddenSize
	return func(add func(string, ...int) *TensorSpec, l int) {
		p := LayerPrefix(l) + "mlp."
		if c.Dense(l) {
			denseMLPSchema(add, p, c.IntermediateSize, H)
			return
		}
		t := add(p+"gate.weight", c.NumExperts, H)
		t.Matrix, t.Gate = true, true
		add(p+"gate.e_score_correction_bias", c.NumExperts)
		if is := c.SharedExpertIntermediateSize; is > 0 {
			denseMLPSchema(add, p+"shared_experts.", is, H)
		}
	}
}
