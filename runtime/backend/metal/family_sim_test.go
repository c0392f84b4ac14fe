package metal

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fmoe/fmoe/pack"
	"github.com/fmoe/fmoe/runtime/golden"
	"github.com/fmoe/fmoe/runtime/model"
)

// TestFamilyGoldenSim runs each new family's transformers goldens (testdata/arch, packed at 16
// bits) through the Metal backend on the kernel simulator, as the CPU and CUDA backends run them:
// Qwen3-MoE (q/k norm, softmax router, no shared expert), GLM-4.5 (q/k/v biases, half rotary,
// grouped sigmoid router, shared expert) and DeepSeek-V3 (latent attention from bound float32
// rotation matrices, element gathers and attention over 48-wide heads), each at its own K and at
// --k 2. The kernels are the Metal build of the source the CUDA build shares.
func TestFamilyGoldenSim(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the kernel simulator")
	}
	needCXX(t)
	newBackend := newSimBackend(t, cxx()[0], nil)
	for _, fam := range []string{"qwen3_moe", "glm4_moe", "deepseek_v3"} {
		t.Run(fam, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "m")
			if _, err := pack.Convert(context.Background(), pack.Options{In: "../../../testdata/arch/" + fam + "/hf", Out: dir, Bits: 16}); err != nil {
				t.Fatal(err)
			}
			for _, g := range []struct {
				file string
				k    int
			}{{"bf16", 0}, {"bf16-k2", 2}} {
				f, err := golden.Load("../../../testdata/arch/" + fam + "/golden/" + g.file + ".safetensors")
				if err != nil {
					t.Fatal(err)
				}
				m, err := model.Open(dir, model.Options{Backend: newBackend(), ExpertsPerToken: g.k})
				if err != nil {
					t.Fatal(err)
				}
				r, err := golden.Check(m, f, 1e-4)
				m.Close()
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s %s on the Metal simulator: worst prompt %.2e, greedy %d/%d, worst generated %.2e", fam, g.file, r.WorstPrompt, r.SameTokens, r.Generated, r.WorstGenerated)
				if !r.Pass() || r.Generated == 0 {
					t.Errorf("%s %s fails: %+v", fam, g.file, r)
				}
			}
		})
	}
}
