package model

import (
	"errors"

	"github.com/fmoe/fmoe/runtime/backend"
)

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
	I, Is := c.MoeIntermediateSize, c.SharedExpertIntermediateSize
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
	if err := sc.free(m.be); err != nil {
		return err
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

// free releases the buffers (ensure then allocates afresh).
func (sc *scratch) free(be backend.Backend) error {
	var errs []error
	for _, b := range []*backend.Buffer{&sc.h, &sc.xn, &sc.o, &sc.qg, &sc.ao, &sc.qkv, &sc.z, &sc.a, &sc.b, &sc.y,
		&sc.router, &sc.sg, &sc.su, &sc.sd, &sc.sgate, &sc.xg, &sc.eg, &sc.eu, &sc.eo, &sc.acc, &sc.logits} {
		if *b != nil {
			errs = append(errs, be.Free(*b))
			*b = nil
		}
	}
	sc.n = 0
	return errors.Join(errs...)
}
