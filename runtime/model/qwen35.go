package model

import (
	"fmt"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/runtime/backend"
)

// qwen35Layer fills a Qwen3.5-MoE layer: gated full attention or GatedDeltaNet, routed experts
// with a softmax router and a sigmoid-gated shared expert.
func qwen35Layer(src *layerSource, L *layer) error {
	c, p, get := src.c, src.p, src.get
	switch c.LayerTypes[src.l] {
	case format.FullAttention:
		L.full = true
		L.q = get(p + "self_attn.q_proj.weight")
		L.k = get(p + "self_attn.k_proj.weight")
		L.v = get(p + "self_attn.v_proj.weight")
		L.o = get(p + "self_attn.o_proj.weight")
		L.qNorm = get(p + "self_attn.q_norm.weight")
		L.kNorm = get(p + "self_attn.k_norm.weight")
	case format.LinearAttention:
		var in []backend.Tensor
		L.inProj, in = src.rows(p+"linear_attn.in_proj_qkv.weight", p+"linear_attn.in_proj_z.weight",
			p+"linear_attn.in_proj_b.weight", p+"linear_attn.in_proj_a.weight")
		L.qkv, L.z, L.b, L.a = in[0], in[1], in[2], in[3]
		L.out = get(p + "linear_attn.out_proj.weight")
		L.conv = get(p + "linear_attn.conv1d.weight")
		L.aLog = get(p + "linear_attn.A_log")
		L.dtBias = get(p + "linear_attn.dt_bias")
		L.gNrm = get(p + "linear_attn.norm.weight")
	default:
		return fmt.Errorf("model: layer %d has type %q", src.l, c.LayerTypes[src.l])
	}
	if c.SharedExpertIntermediateSize > 0 {
		var gu, rs []backend.Tensor
		L.shGU, gu = src.rows(p+"mlp.shared_expert.gate_proj.weight", p+"mlp.shared_expert.up_proj.weight")
		L.shGate, L.shUp = gu[0], gu[1]
		L.shDown = get(p + "mlp.shared_expert.down_proj.weight")
		L.routerSh, rs = src.rows(p+"mlp.gate.weight", p+"mlp.shared_expert_gate.weight")
		L.router, L.shScale = rs[0], rs[1]
	} else {
		L.router = get(p + "mlp.gate.weight")
	}
	L.moe(softmaxRoute(true))
	L.dev = &devRule{renorm: true}
	return nil
}
