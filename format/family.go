package format

import (
	"fmt"
	"slices"
	"strings"
)

// A family is one model architecture fmoe runs: which config.json model_type values it reads,
// the fields only it has, the checks on them, and the tensors its layers hold. Each family is
// its own file (qwen35.go, qwen3moe.go, glm4moe.go, deepseekv3.go, qwen3next.go); the shared code
// asks the registry. Two families may share an arch when one is packed as the other
// (Qwen3-Next as Qwen3.5-MoE): the first listed is the arch's.
type family struct {
	arch       string   // Config.Architecture
	name       string   // for people: "Qwen3.5-MoE"
	modelTypes []string // config.json model_type values
	// partialRotary is partial_rotary_factor when the config leaves it out.
	partialRotary float64
	// ropeTypes are the rope_type values other than "default" the family's parse reads itself.
	ropeTypes []string
	parse     func(r *reader, c *Config)
	validate  func(c *Config) error
	schema    func(c *Config) []TensorSpec
}

// Architecture names fmoe runs.
const (
	ArchQwen35MoE  = "qwen3_5_moe"
	ArchQwen3MoE   = "qwen3_moe"
	ArchGLM4MoE    = "glm4_moe"
	ArchDeepseekV3 = "deepseek_v3"
)

var families = []*family{qwen35Family, qwen3MoEFamily, glm4MoEFamily, deepseekV3Family, qwen3NextFamily}

func familyByModelType(mt string) *family {
	for _, f := range families {
		for _, t := range f.modelTypes {
			if t == mt {
				return f
			}
		}
	}
	return nil
}

func familyByArch(arch string) *family {
	for _, f := range families {
		if f.arch == arch {
			return f
		}
	}
	return nil
}

// Architectures lists the Config.Architecture values fmoe runs.
func Architectures() []string {
	var a []string
	for _, f := range families {
		if !slices.Contains(a, f.arch) {
			a = append(a, f.arch)
		}
	}
	return a
}

// SupportedFamilies names the families fmoe runs by their config.json model_type, for error
// messages.
func SupportedFamilies() string {
	var s []string
	for _, f := range families {
		var types []string
		for _, t := range f.modelTypes {
			// A text_config's own model_type (qwen3_5_moe_text) is never a checkpoint's.
			if !strings.HasSuffix(t, "_text") {
				types = append(types, t)
			}
		}
		s = append(s, fmt.Sprintf("%s (%s)", strings.Join(types, " or "), f.name))
	}
	return strings.Join(s, ", ")
}

// Schema lists every non-expert tensor of the model in file order (nil for an unknown
// architecture, which Config.Validate refuses).
func Schema(c *Config) []TensorSpec {
	f := familyByArch(c.Architecture)
	if f == nil {
		return nil
	}
	return f.schema(c)
}

// allFull is the layer_types of a model whose every layer is full attention (nil for a layer
// count Validate refuses: a config is untrusted, and this allocates before Validate runs).
func allFull(n int) []string {
	if n <= 0 || n > maxDim {
		return nil
	}
	t := make([]string, n)
	for i := range t {
		t[i] = FullAttention
	}
	return t
}

// checkAllFull is the check of a family without linear attention or an output gate.
func checkAllFull(c *Config) error {
	for i, t := range c.LayerTypes {
		if t != FullAttention {
			return fmt.Errorf("layer_types[%d] is %q: %s has only %q layers", i, t, c.Architecture, FullAttention)
		}
	}
	if c.AttnOutputGate {
		return fmt.Errorf("attn_output_gate is set: %s attention has no output gate", c.Architecture)
	}
	return nil
}

// gqaSchema lists the tensors of a plain GQA attention block (q, k, v, o projections, optional
// q/k biases and per-head norms), none of them zero-centred.
func gqaSchema(add func(string, ...int) *TensorSpec, p string, c *Config, bias, qkNorm bool) {
	nh, nkv, hd, H := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.HiddenSize
	add(p+"self_attn.q_proj.weight", nh*hd, H).Matrix = true
	add(p+"self_attn.k_proj.weight", nkv*hd, H).Matrix = true
	add(p+"self_attn.v_proj.weight", nkv*hd, H).Matrix = true
	add(p+"self_attn.o_proj.weight", H, nh*hd).Matrix = true
	if bias {
		add(p+"self_attn.q_proj.bias", nh*hd)
		add(p+"self_attn.k_proj.bias", nkv*hd)
		add(p+"self_attn.v_proj.bias", nkv*hd)
	}
	if qkNorm {
		add(p+"self_attn.q_norm.weight", hd)
		add(p+"self_attn.k_norm.weight", hd)
	}
}

// denseMLPSchema lists a SwiGLU MLP's three matrices under prefix p ("…mlp.").
func denseMLPSchema(add func(string, ...int) *TensorSpec, p string, inter, H int) {
	add(p+"gate_proj.weight", inter, H).Matrix = true
	add(p+"up_proj.weight", inter, H).Matrix = true
	add(p+"down_proj.weight", H, inter).Matrix = true
}

// schemaOf lists a pre-norm decoder's tensors: the embeddings, per layer the input norm, the
// family's attention tensors, the post-attention norm and its MLP tensors, then the final norm
// and the head. Every family but Qwen3.5 (whose schema predates this) shares it.
func schemaOf(c *Config, attn, mlp func(add func(string, ...int) *TensorSpec, l int)) []TensorSpec {
	var s []TensorSpec
	add := func(name string, shape ...int) *TensorSpec {
		s = append(s, TensorSpec{Name: name, Shape: shape})
		return &s[len(s)-1]
	}
	H, V := c.HiddenSize, c.VocabSize
	add("model.embed_tokens.weight", V, H).Matrix = true
	for l := 0; l < c.NumHiddenLayers; l++ {
		p := LayerPrefix(l)
		add(p+"input_layernorm.weight", H)
		attn(add, l)
		add(p+"post_attention_layernorm.weight", H)
		mlp(add, l)
	}
	add("model.norm.weight", H)
	if !c.TieWordEmbeddings {
		add("lm_head.weight", V, H).Matrix = true
	}
	return s
}
