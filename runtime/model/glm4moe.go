package model

import "github.com/fmoe/fmoe/runtime/backend"

// glm4MoELayer fills a GLM-4.5 MoE layer: GQA with q/k/v biases (attention_bias), optional
// per-head q/k norm and partial rotary; the MLP of groupedMoELayer.
func glm4MoELayer(src *layerSource, L *layer) error {
	src.gqa(L, src.c.AttentionBias, src.c.UseQKNorm)
	return groupedMoELayer(src, L)
}

// groupedMoELayer fills the MLP GLM-4.5 and DeepSeek-V3 share: a dense MLP in the first
// first_k_dense_replace layers, routed experts with the grouped sigmoid router and an ungated
// shared expert in the others.
func groupedMoELayer(src *layerSource, L *layer) error {
	c, p := src.c, src.p+"mlp."
	if c.Dense(src.l) {
		src.dense(L)
		return nil
	}
	bias, err := src.vec(p + "gate.e_score_correction_bias")
	if err != nil {
		return err
	}
	L.router = src.get(p + "gate.weight")
	if c.SharedExpertIntermediateSize > 0 {
		var gu []backend.Tensor
		L.shGU, gu = src.rows(p+"shared_experts.gate_proj.weight", p+"shared_experts.up_proj.weight")
		L.shGate, L.shUp = gu[0], gu[1]
		L.shDown = src.get(p + "shared_experts.down_proj.weight")
	}
	L.moe(sigmoidRoute(bias, c.NGroup, c.TopKGroup, c.NormTopKProb, c.RoutedScalingFactor))
	return nil
}
