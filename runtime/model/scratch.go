package model

import "github.com/fmoe/fmoe/runtime/backend"

// scratch holds the activation buffers of one step, sized for up to n
// tokens; ops use views of the exact size.
type scratch struct {
	n                 int
	h, xn, o          backend.Buffer // [n, H]
	qg, ao            backend.Buffer // full attention: q_proj out, attention out
	qkv, z, a, b, y   backend.Buffer // GatedDeltaNet
	router            backend.Buffer // [n, E]
	sg, su, sd, sgate backend.Buffer // shared expert
	xg, eg, eu        backend.Buffer // routed expert on its gathered tokens
	eo                backend.Buffer // [n·K, H]: every expert's output rows
	acc               backend.Buffer // [n, H]: the MoE block's output
	logits            backend.Buffer // [vocab]
}

func (sc *scratch) ensure(m *Model, n int) error {
	if n <= sc.n {
		return nil
	}
	c := &m.Config
	H := c.HiddenSize
	qRows := c.NumAttentionHeads * c.HeadDim
	if c.AttnOutputGate {
		qRows *= 2
	}
	hv := c.LinearNumValueHeads * c.LinearValueHeadDim
	// sg and su serve the shared expert and a dense layer's MLP.
	I, Is := c.MoeIntermediateSize, max(c.SharedExpertIntermediateSize, c.IntermediateSize)
	sizes := []struct {
		b *backend.Buffer
		n int
	}{
		{&sc.h, n * H}, {&sc.xn, n * H}, {&sc.o, n * H},
		{&sc.qg, n * qRows}, {&sc.ao, n * c.NumAttentionHeads * c.HeadDim},
		{&sc.qkv, n * c.ConvDim()}, {&sc.z, n * hv}, {&sc.y, n * hv},
		{&sc.a, n * c.LinearNumValueHeads}, {&sc.b, n * c.LinearNumValueHeads},
		{&sc.router, n * c.NumExperts},
		{&sc.sg, n * max(Is, 1)}, {&sc.su, n * max(Is, 1)}, {&sc.sd, n * H}, {&sc.sgate, n},
		{&sc.xg, n * H}, {&sc.eg, n * I}, {&sc.eu, n * I}, {&sc.eo, n * m.K * H}, {&sc.acc, n * H},
		{&sc.logits, c.VocabSize},
	}
	for _, s := range sizes {
		b, err := m.be.Alloc(s.n)
		if err != nil {
			return err
		}
		*s.b = b
	}
	sc.n = n
	return nil
}
