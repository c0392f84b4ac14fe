package model

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/runtime/backend"
)

// A family fills one decoder layer: its resident tensors, its MLP (routed experts or dense) and
// its router. The decoder loop (Session.step), the attention and the MoE block are shared; each
// family is a file of its own (qwen35.go, qwen3moe.go, glm4moe.go, deepseekv3.go) registered here by
// format.Config.Architecture.
type family func(src *layerSource, L *layer) error

var families = map[string]family{
	format.ArchQwen35MoE:  qwen35Layer,
	format.ArchQwen3MoE:   qwen3MoELayer,
	format.ArchGLM4MoE:    glm4MoELayer,
	format.ArchDeepseekV3: deepseekV3Layer,
}

// layerSource hands a family the tensors of layer l.
type layerSource struct {
	c   *format.Config
	l   int
	p   string // format.LayerPrefix(l)
	get func(name string) backend.Tensor
	// rows registers the named weights as the rows of one tensor where the
	// backend can (backend.RowConcatenator): whole is nil where it cannot,
	// and parts are then registered one by one (fuse.go).
	rows func(names ...string) (whole backend.Tensor, parts []backend.Tensor)
	// vec reads a 1-D float tensor to the host (a router's correction bias).
	vec func(name string) ([]float32, error)
}

// gqa fills the plain grouped-query attention tensors (no output gate); biases and per-head
// norms only where the family has them.
func (src *layerSource) gqa(L *layer, bias, qkNorm bool) {
	p := src.p + "self_attn."
	L.full = true
	L.q = src.get(p + "q_proj.weight")
	L.k = src.get(p + "k_proj.weight")
	L.v = src.get(p + "v_proj.weight")
	L.o = src.get(p + "o_proj.weight")
	if bias {
		L.qb = src.get(p + "q_proj.bias")
		L.kb = src.get(p + "k_proj.bias")
		L.vb = src.get(p + "v_proj.bias")
	}
	if qkNorm {
		L.qNorm = src.get(p + "q_norm.weight")
		L.kNorm = src.get(p + "k_norm.weight")
	}
}

// dense makes the layer's MLP one SwiGLU MLP (prefix "…mlp.").
func (src *layerSource) dense(L *layer) {
	p := src.p + "mlp."
	L.mlpGate = src.get(p + "gate_proj.weight")
	L.mlpUp = src.get(p + "up_proj.weight")
	L.mlpDown = src.get(p + "down_proj.weight")
	L.fixed, L.ffn = (*Session).denseMLP, nil
}

// moe makes the layer's MLP the MoE block (moe.go) with router rt.
func (L *layer) moe(rt router) {
	L.fixed = func(s *Session, r *run, L *layer, xn, _ backend.Buffer, T int) { s.moeFixed(r, L, xn, T) }
	L.ffn, L.route = (*Session).moe, rt
}

// hostVector decodes a 1-D float tensor of the weights file.
func hostVector(man *format.Manifest, blob []byte, name string) ([]float32, error) {
	t, err := man.Tensor(name)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if len(t.Shape) != 1 || t.Data.Offset < 0 || t.Data.End() > int64(len(blob)) {
		return nil, fmt.Errorf("model: tensor %s: shape %v at [%d, %d) is not a vector inside the weights file", name, t.Shape, t.Data.Offset, t.Data.End())
	}
	b := blob[t.Data.Offset:t.Data.End()]
	v := make([]float32, t.Shape[0])
	var size int
	switch t.DType {
	case format.DTypeBF16, format.DTypeF16:
		size = 2
	case format.DTypeF32:
		size = 4
	default:
		return nil, fmt.Errorf("model: tensor %s has dtype %s, want a float", name, t.DType)
	}
	if len(b) != size*len(v) {
		return nil, fmt.Errorf("model: tensor %s holds %d bytes for %d values", name, len(b), len(v))
	}
	for i := range v {
		switch t.DType {
		case format.DTypeBF16:
			v[i] = backend.BF16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
		case format.DTypeF16:
			v[i] = backend.F16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
		default:
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	}
	return v, nil
}
