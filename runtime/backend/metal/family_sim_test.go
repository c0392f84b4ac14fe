package metal

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fmoe/fmoe/pack"
	"github.com/fmoe/fmoe/runtime/golden"
	"github.com/fmoe/fmoe/runtime/model"
)

// TestDeepseekV3GoldenSim runs DeepSeek-V3's transformers golden through the Metal backend on
// the simulator: its latent attention uses only ops every backend has (bound float32 rotation
// matrices, element gathers, attention over 48-wide heads), here with the kernels' Metal build,
// the source the CUDA build shares.
func TestDeepseekV3GoldenSim(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the kernel simulator")
	}
	needCXX(t)
	dir := filepath.Join(t.TempDir(), "m")
	if _, err := pack.Convert(context.Background(), pack.Options{In: "../../../testdata/arch/deepseek_v3/hf", Out: dir, Bits: 16}); err != nil {
		t.Fatal(err)
	}
	f, err := golden.Load("../../../testdata/arch/deepseek_v3/golden/bf16.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Open(dir, model.Options{Backend: newSimBackend(t, cxx()[0], nil)()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := golden.Check(m, f, 1e-4)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deepseek_v3 bf16 on the Metal simulator: worst prompt %.2e, greedy %d/%d, worst generated %.2e", r.WorstPrompt, r.SameTokens, r.Generated, r.WorstGenerated)
	if !r.Pass() || r.Generated == 0 {
		t.Errorf("fails: %+v", r)
	}
}
