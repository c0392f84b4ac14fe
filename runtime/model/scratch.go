package model

import (
	"errors"

	"github.com/fmoe/fmoe/runtime/backend"
)

// scratch holds the activation buffers of one step, sized for up to n
// tokens; ops use views of the exact size.
type scratch struct {
	n                 int
	gen               int            // counts reallocations (graphs recorded before are stale)
	h, xn, o          backend.Buffer // [n, H]
	qg, ao            backend.Buffer // full attention: q_proj out, attention out
	qkv, z, a, b, y   backend.Buffer // GatedDeltaNet
	router            backend.Buffer // [n, E]
	sg, su, sd, sgate backend.Buffer // shared expert
	xg                backend.Buffer // routed expert: its gathered tokens
	eg, eu            backend.Buffer // [n·K, I]: gate and up (one expert, or a batch of them)
	eo                backend.Buffer // [n·K, H]: every expert's output rows
	acc               backend.Buffer // [n, H]: the MoE block's output
	logits            backend.Buffer // [vocab]
	pick              backend.Buffer // [2]: a greedy step's token and finiteness flag (greedy.go)
	dev               backend.Buffer // device routing: status, ids, weights (devroute.go)
}

func (sc *scratch) ensure(m *Model, n int) error {
	if n <= sc.n {
		return nil
	}
	sizes := scratchSizes(sc, m, n)
	if err := sc.free(m); err != nil {
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
	sc.gen++
	return nil
}

type scratchSize struct {
	b *backend.Buffer
	n int
}

// scratchSizes lists the buffers of sc and their sizes for n tokens.
func scratchSizes(sc *scratch, m *Model, n int) []scratchSize {
	c := &m.Config
	H := c.HiddenSize
	qRows := c.NumAttentionHeads * c.HeadDim
	if c.AttnOutputGate {
		qRows *= 2
	}
	hv := c.LinearNumValueHeads * c.LinearValueHeadDim
	// sg and su serve the shared expert and a dense layer's MLP.
	I, Is := c.MoeIntermediateSize, max(c.SharedExpertIntermediateSize, c.IntermediateSize)
	return []scratchSize{
		{&sc.h, n * H}, {&sc.xn, n * H}, {&sc.o, n * H},
		{&sc.qg, n * qRows}, {&sc.ao, n * c.NumAttentionHeads * c.HeadDim},
		// qkv and sg also hold one token's fused outputs (fuse.go).
		{&sc.qkv, max(n*c.ConvDim(), c.ConvDim()+hv+2*c.LinearNumValueHeads)}, {&sc.z, n * hv}, {&sc.y, n * hv},
		{&sc.a, n * c.LinearNumValueHeads}, {&sc.b, n * c.LinearNumValueHeads},
		// One token's logits, the shared expert's gate, and the logits
		// predicted for a later layer (prefetch.go).
		{&sc.router, max(n*c.NumExperts, 2*c.NumExperts+1)},
		{&sc.sg, max(n, 2) * max(Is, 1)}, {&sc.su, n * max(Is, 1)}, {&sc.sd, n * H}, {&sc.sgate, n},
		// One more expert row than routed: a device-routed step's shared
		// expert as the routed batch's job K (devroute.go).
		{&sc.xg, n * H}, {&sc.eg, (n*m.K + 1) * I}, {&sc.eu, (n*m.K + 1) * I}, {&sc.eo, (n*m.K + 1) * H}, {&sc.acc, n * H},
		{&sc.logits, c.VocabSize}, {&sc.pick, 2}, {&sc.dev, devBufLen(m)},
	}
}

// scratchFloats is the float32 values the activations of n tokens take.
func scratchFloats(m *Model, n int) int {
	t := 0
	for _, s := range scratchSizes(&scratch{}, m, n) {
		t += s.n
	}
	return t
}

// free releases the buffers (ensure then allocates afresh).
func (sc *scratch) free(m *Model) error {
	var errs []error
	for _, s := range scratchSizes(sc, m, 0) {
		if *s.b != nil {
			errs = append(errs, m.be.Free(*s.b))
			*s.b = nil
		}
	}
	sc.n = 0
	return errors.Join(errs...)
}
