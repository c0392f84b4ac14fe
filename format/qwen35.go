package format

import "fmt"

// qwen35Family is Qwen3.5-MoE: GatedDeltaNet and gated full attention, zero-centred norms,
// softmax routing, a sigmoid-gated shared expert (schema.go lists its tensors).
var qwen35Family = &family{
	arch:          ArchQwen35MoE,
	name:          "Qwen3.5-MoE",
	modelTypes:    []string{"qwen3_5_moe", "qwen3_5_moe_text"},
	partialRotary: 1,
	parse:         parseQwen35,
	validate:      validateQwen35,
	schema:        qwen35Schema,
}

func parseQwen35(r *reader, c *Config) {
	c.AttnOutputGate = r.boolOr("attn_output_gate", true)
	c.LinearNumKeyHeads = r.posInt("linear_num_key_heads")
	c.LinearNumValueHeads = r.posInt("linear_num_value_heads")
	c.LinearKeyHeadDim = r.posInt("linear_key_head_dim")
	c.LinearValueHeadDim = r.posInt("linear_value_head_dim")
	c.LinearConvKernelDim = r.posInt("linear_conv_kernel_dim")
	c.NumExperts = r.posInt("num_experts")
	c.SharedExpertIntermediateSize = r.intOr("shared_expert_intermediate_size", 0)
	r.opt("layer_types", &c.LayerTypes)
	if c.LayerTypes == nil && r.err == nil {
		interval := r.intOr("full_attention_interval", 0)
		switch {
		case interval <= 0:
			r.fail("missing field layer_types (or full_attention_interval)")
		case c.NumHiddenLayers < 0 || c.NumHiddenLayers > maxDim:
			// Validate reports the field; the list is not built for a count it refuses.
		default:
			for i := 0; i < c.NumHiddenLayers; i++ {
				t := LinearAttention
				if (i+1)%interval == 0 {
					t = FullAttention
				}
				c.LayerTypes = append(c.LayerTypes, t)
			}
		}
	}
}

func validateQwen35(c *Config) error {
	switch {
	case c.LinearNumKeyHeads <= 0 || c.LinearNumValueHeads <= 0:
		return fmt.Errorf("linear_num_key_heads %d, linear_num_value_heads %d: want positive counts", c.LinearNumKeyHeads, c.LinearNumValueHeads)
	case c.LinearNumValueHeads%c.LinearNumKeyHeads != 0:
		return fmt.Errorf("linear_num_value_heads %d is not a multiple of linear_num_key_heads %d", c.LinearNumValueHeads, c.LinearNumKeyHeads)
	case c.MLPTypes != nil:
		return fmt.Errorf("mlp_types is set: every %s layer has routed experts", c.Architecture)
	}
	return nil
}
