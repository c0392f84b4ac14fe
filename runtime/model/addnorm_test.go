package model

import (
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
)

// addNormBackend gives a backend backend.AddNormer as Add then RMSNorm (the
// CPU has no fused norm), counting the calls, so that the model's deferred
// residual add runs on the CPU.
type addNormBackend struct {
	backend.Backend
	calls int
}

func (b *addNormBackend) AddRMSNorm(y, h, r backend.Buffer, l backend.Heads, w backend.Tensor, eps float32) error {
	b.calls++
	if err := b.Add(h, r); err != nil {
		return err
	}
	return b.RMSNorm(y, h, l, w, eps)
}

// addNormTestBackend is the test backend where it fuses the add itself
// (CUDA), else the CPU (or the test backend) wrapped in addNormBackend,
// which it also returns.
func addNormTestBackend(t *testing.T) (backend.Backend, *addNormBackend) {
	return standInBackend(t, func(b backend.Backend) bool { _, ok := b.(backend.AddNormer); return ok },
		func(b backend.Backend) *addNormBackend { return &addNormBackend{Backend: b} })
}

// TestGoldenAddNorm: with a backend that fuses the residual add into the
// norm after it, every golden run (Qwen3.5's layouts, then each family's
// mixers: attention, GatedDeltaNet, DeepSeek-V3's latent attention)
// computes the separate add's logits bit for bit, every layer's add going
// through the fused norm (one a layer a step on the CPU stand-in); an add
// left pending and dropped, or done twice, fails it.
func TestGoldenAddNorm(t *testing.T) {
	defer func(v bool) { addNormOff = v }(addNormOff)
	run := func(t *testing.T, src string, bits, k int, g *golden) {
		tb, ab := addNormTestBackend(t)
		addNormOff = true
		ref, _ := goldenRun(t, open(t, src, bits, k, Options{Backend: tb}), g)
		if ab != nil && ab.calls != 0 {
			t.Fatalf("%d fused norms with the fusion off", ab.calls)
		}
		addNormOff = false
		m := open(t, src, bits, k, Options{Backend: tb})
		got, _ := goldenRun(t, m, g)
		if ab != nil && ab.calls == 0 {
			t.Fatal("no layer's add went through the fused norm")
		}
		if i := firstDiff(got, ref); i >= 0 {
			t.Errorf("logit %d is %v with the add in the norm, %v apart", i, got[i], ref[i])
		}
	}
	for _, c := range cases {
		t.Run(c.src+"/"+c.golden, func(t *testing.T) {
			g := readGolden(t, c.golden)
			run(t, c.src, c.bits, c.k, g)
		})
	}
	for _, c := range familyCases {
		t.Run(c.family+"/"+c.golden, func(t *testing.T) {
			g := readGolden(t, "../../arch/"+c.family+"/golden/"+c.golden)
			run(t, "../arch/"+c.family+"/hf", 16, c.k, g)
		})
	}
}
