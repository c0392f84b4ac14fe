package format

import "fmt"

// TensorSpec is a non-expert tensor the model needs, as the config dictates.
type TensorSpec struct {
	Name  string
	Shape []int
	// Matrix tensors are quantised by the packer; others keep a float dtype.
	Matrix bool
	// Gate marks the router and shared-expert gates, which the packer keeps at 8 bits or more
	// because routing decisions are sensitive to them.
	Gate bool
	// NormShift marks zero-centred RMSNorm weights, stored as 1+w.
	NormShift bool
}

// LayerPrefix is the canonical prefix of layer l's tensors.
func LayerPrefix(l int) string { return fmt.Sprintf("model.layers.%d.", l) }

// qwen35Schema lists Qwen3.5-MoE's non-expert tensors in file order.
func qwen35Schema(c *Config) []TensorSpec {
	H, V := c.HiddenSize, c.VocabSize
	var s []TensorSpec
	add := func(name string, shape ...int) *TensorSpec {
		s = append(s, TensorSpec{Name: name, Shape: shape})
		return &s[len(s)-1]
	}
	mat := func(name string, rows, cols int) *TensorSpec {
		t := add(name, rows, cols)
		t.Matrix = true
		return t
	}
	add("model.embed_tokens.weight", V, H).Matrix = true
	for l := 0; l < c.NumHiddenLayers; l++ {
		p := LayerPrefix(l)
		add(p+"input_layernorm.weight", H).NormShift = true
		switch c.LayerTypes[l] {
		case LinearAttention:
			hv, dv := c.LinearNumValueHeads, c.LinearValueHeadDim
			mat(p+"linear_attn.in_proj_qkv.weight", c.ConvDim(), H)
			mat(p+"linear_attn.in_proj_z.weight", hv*dv, H)
			mat(p+"linear_attn.in_proj_b.weight", hv, H)
			mat(p+"linear_attn.in_proj_a.weight", hv, H)
			add(p+"linear_attn.conv1d.weight", c.ConvDim(), c.LinearConvKernelDim)
			add(p+"linear_attn.A_log", hv)
			add(p+"linear_attn.dt_bias", hv)
			add(p+"linear_attn.norm.weight", dv)
			mat(p+"linear_attn.out_proj.weight", H, hv*dv)
		case FullAttention:
			nh, nkv, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
			qRows := nh * hd
			if c.AttnOutputGate {
				qRows *= 2
			}
			mat(p+"self_attn.q_proj.weight", qRows, H)
			mat(p+"self_attn.k_proj.weight", nkv*hd, H)
			mat(p+"self_attn.v_proj.weight", nkv*hd, H)
			mat(p+"self_attn.o_proj.weight", H, nh*hd)
			add(p+"self_attn.q_norm.weight", hd).NormShift = true
			add(p+"self_attn.k_norm.weight", hd).NormShift = true
		}
		add(p+"post_attention_layernorm.weight", H).NormShift = true
		mat(p+"mlp.gate.weight", c.NumExperts, H).Gate = true
		if is := c.SharedExpertIntermediateSize; is > 0 {
			mat(p+"mlp.shared_expert.gate_proj.weight", is, H)
			mat(p+"mlp.shared_expert.up_proj.weight", is, H)
			mat(p+"mlp.shared_expert.down_proj.weight", H, is)
			mat(p+"mlp.shared_expert_gate.weight", 1, H).Gate = true
		}
	}
	add("model.norm.weight", H).NormShift = true
	if !c.TieWordEmbeddings {
		mat("lm_head.weight", V, H)
	}
	return s
}

// ExpertShape returns the [rows, cols] of an expert projection.
func ExpertShape(c *Config, proj string) ([]int, error) {
	H, I := c.HiddenSize, c.MoeIntermediateSize
	switch proj {
	case "gate_proj", "up_proj":
		return []int{I, H}, nil
	case "down_proj":
		return []int{H, I}, nil
	}
	return nil, fmt.Errorf("unknown expert projection %q", proj)
}

// maxElements bounds a tensor's element count so that its byte size (at most 4 bytes an
// element) and any sum of a few such sizes stay far from int64 overflow.
const maxElements = 1 << 56

// elements is the product of shape, or an error when a dimension is not positive or the
// product exceeds maxElements.
func elements(shape []int) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d <= 0 {
			return 0, fmt.Errorf("shape %v has a non-positive dimension", shape)
		}
		if int64(d) > maxElements/n {
			return 0, fmt.Errorf("shape %v has more than 2^56 elements", shape)
		}
		n *= int64(d)
	}
	return n, nil
}

// DataSize is the byte size of a tensor's data range.
func DataSize(dtype string, shape []int, bits int) (int64, error) {
	n, err := elements(shape)
	if err != nil {
		return 0, err
	}
	switch dtype {
	case DTypeBF16, DTypeF16:
		return 2 * n, nil
	case DTypeF32:
		return 4 * n, nil
	case DTypeU32:
		if bits != 2 && bits != 4 && bits != 8 {
			return 0, fmt.Errorf("quantised bits %d, want 2, 4 or 8", bits)
		}
		if len(shape) != 2 || shape[1]%(32/bits) != 0 {
			return 0, fmt.Errorf("quantised shape %v: want [rows, cols] with cols a multiple of %d", shape, 32/bits)
		}
		return n * int64(bits) / 8, nil
	}
	return 0, fmt.Errorf("dtype %q, want U32, BF16, F16 or F32", dtype)
}

// GroupParamSize is the byte size of the bf16 scales (or biases) of a quantised matrix.
func GroupParamSize(shape []int, group int) (int64, error) {
	if len(shape) != 2 || group <= 0 || shape[1]%group != 0 {
		return 0, fmt.Errorf("quantised shape %v: cols must be a multiple of group size %d", shape, group)
	}
	n, err := elements([]int{shape[0], shape[1] / group})
	if err != nil {
		return 0, err
	}
	return n * 2, nil
}
