package model

// qwen3MoELayer fills a Qwen3-MoE layer: GQA with per-head q/k RMSNorm (plain w), full rotary,
// no output gate; routed experts with a softmax router (renormalised iff norm_topk_prob) and no
// shared expert, or a dense MLP (mlp_only_layers, decoder_sparse_step).
func qwen3MoELayer(src *layerSource, L *layer) error {
	src.gqa(L, false, true)
	if src.c.Dense(src.l) {
		src.dense(L)
		return nil
	}
	L.router = src.get(src.p + "mlp.gate.weight")
	L.moe(softmaxRoute(src.c.NormTopKProb))
	L.dev = &devRule{renorm: src.c.NormTopKProb}
	return nil
}
