package model

import (
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
)

// foldBackend gives a backend backend.NormMatMuler as the norm's call then
// MatMul's (the contract's plainest form), counting the calls by kind, on
// top of rowsBackend (the in-projection the input norm folds into is a
// fused tensor), so that the model's folded path runs on the CPU. dropGate
// makes it a wrong one: the gated norm without its gate.
type foldBackend struct {
	*rowsBackend
	plain, gated int
	dropGate     bool
}

func (b *foldBackend) NormMatMul(n backend.Norm, y backend.Buffer, w backend.Tensor) error {
	if n.Gate {
		b.gated++
		n.Gate = !b.dropGate
	} else if !n.Add {
		b.plain++
	}
	if err := n.Apply(b.rowsBackend); err != nil {
		return err
	}
	return b.MatMul(y, w, n.Y, 1)
}

// TestGoldenNormFold: with a backend that folds a norm into the one-token
// MatMul after it, every golden run of Qwen3.5 (its GatedDeltaNet layers,
// in each layout) computes the separate calls' logits bit
// for bit, each decode step's GatedDeltaNet layers folding both their
// input norm and their gated norm; a folder that drops the gate fails it.
// On CUDA (FMOE_TEST_BACKEND=cuda, with FMOE_CUDA_FOLD=1 the fused
// kernels) the backend's own NormMatMul runs.
func TestGoldenNormFold(t *testing.T) {
	defer func(v bool) { normFoldOff = v }(normFoldOff)
	run := func(t *testing.T, src string, bits, k int, g *golden) {
		tb := testBackend(t)
		var fb *foldBackend
		if _, ok := tb.(backend.NormMatMuler); !ok || tb == nil {
			rb, _ := rowsTestBackend(t)
			if r, ok := rb.(*rowsBackend); ok {
				fb = &foldBackend{rowsBackend: r}
				tb = fb
			}
		}
		normFoldOff = true
		ref, _ := goldenRun(t, open(t, src, bits, k, Options{Backend: tb}), g)
		if fb != nil && fb.plain+fb.gated != 0 {
			t.Fatalf("%d folded norms with the fold off", fb.plain+fb.gated)
		}
		normFoldOff = false
		got, _ := goldenRun(t, open(t, src, bits, k, Options{Backend: tb}), g)
		if i := firstDiff(got, ref); i >= 0 {
			t.Fatalf("logit %d is %v with the norms folded, %v apart", i, got[i], ref[i])
		}
		if fb == nil {
			return
		}
		if fb.plain == 0 || fb.gated == 0 {
			t.Fatalf("%d input norms and %d gated norms folded: want both", fb.plain, fb.gated)
		}
		fb.dropGate = true
		bad, _ := goldenRun(t, open(t, src, bits, k, Options{Backend: tb}), g)
		fb.dropGate = false
		if firstDiff(bad, ref) < 0 {
			t.Fatal("a folder that drops the gate computed the same logits")
		}
	}
	for _, c := range cases {
		t.Run(c.src+"/"+c.golden, func(t *testing.T) {
			run(t, c.src, c.bits, c.k, readGolden(t, c.golden))
		})
	}
}
