package pack

import (
	"testing"

	"github.com/fmoe/fmoe/runtime/golden"
	"github.com/fmoe/fmoe/runtime/model"
)

// TestFP8DeepSeekGolden packs DeepSeek-V3's FP8 release layout at --bits 16 and runs
// transformers' golden for it (testdata/arch/deepseek_v3/golden/fp8.safetensors: float32 compute
// on the dequantised weights) at the usual 1e-4. The checkpoint is built here from the bf16
// fixture as make_arch_fixtures.py built the reference's fp8/ (32×32 tiles, amax/448 scales,
// torch's rounding, routed experts left bf16 and so exact): the same bytes, checked when this
// test was written. The FP8 dense matrices are stored as F32, exactly the weights transformers
// used, so nothing but float32 arithmetic separates the two.
func TestFP8DeepSeekGolden(t *testing.T) {
	fp8Dir, _ := fp8Build{src: "../testdata/arch/deepseek_v3/hf", br: 32, bc: 32, bf16Experts: true}.write(t)
	p := convert(t, fp8Dir, Options{Bits: 16})
	m, err := model.Open(p.dir, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, g := range []struct {
		file string
		pass bool
	}{{"fp8", true}, {"bf16", false}} {
		f, err := golden.Load("../testdata/arch/deepseek_v3/golden/" + g.file + ".safetensors")
		if err != nil {
			t.Fatal(err)
		}
		r, err := golden.Check(m, f, 1e-4)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s golden: worst prompt %.2e, decode %.2e, greedy %d/%d", g.file, r.WorstPrompt, r.WorstGenerated, r.SameTokens, r.Generated)
		if r.Pass() != g.pass {
			t.Errorf("%s golden: pass %v, want %v (the bf16 one is of other weights and must fail)", g.file, r.Pass(), g.pass)
		}
	}
}
