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
// used, so nothing but float32 arithmetic separates the two. It passes with the MLA expanded
// form's cap at its default and at 1 position (every prompt step absorbed).
func TestFP8DeepSeekGolden(t *testing.T) {
	fp8Dir, _ := fp8Build{src: "../testdata/arch/deepseek_v3/hf", br: 32, bc: 32, bf16Experts: true}.write(t)
	p := convert(t, fp8Dir, Options{Bits: 16})
	for _, limit := range []int{0, 1} {
		checkFP8DeepSeek(t, p.dir, limit)
	}
}

func checkFP8DeepSeek(t *testing.T, dir string, limit int) {
	t.Helper()
	m, err := model.Open(dir, model.Options{MLAExpandedMax: limit})
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
		t.Logf("cap %d, %s golden: worst prompt %.2e, decode %.2e, greedy %d/%d", limit, g.file, r.WorstPrompt, r.WorstGenerated, r.SameTokens, r.Generated)
		if r.Pass() != g.pass {
			t.Errorf("cap %d, %s golden: pass %v, want %v (the bf16 one is of other weights and must fail)", limit, g.file, r.Pass(), g.pass)
		}
	}
}

// TestFP8DeepSeekBadScales: DeepSeek-V3's and Kimi-K2's FP8 releases with a latent-attention
// scale missing or misshapen are refused naming the tensor, and the failed pack leaves nothing behind.
func TestFP8DeepSeekBadScales(t *testing.T) {
	fp8Dir, _ := fp8Build{src: "../testdata/arch/deepseek_v3/hf", br: 32, bc: 32, bf16Experts: true}.write(t)
	const kvb = "model.layers.1.self_attn.kv_b_proj.weight"
	const qa = "model.layers.0.self_attn.q_a_proj.weight"
	for _, c := range []struct {
		name  string
		kimi  bool
		bad   func(t *testing.T, dir string)
		wants []string
	}{
		{"kv_b_proj scale missing", false, func(t *testing.T, d string) {
			rewriteShard(t, d, kvb+"_scale_inv", func(*stEntry) bool { return false })
		}, []string{kvb + "_scale_inv", "missing"}},
		{"q_a_proj scale a row of tiles short", true, func(t *testing.T, d string) {
			rewriteShard(t, d, qa+"_scale_inv", func(e *stEntry) bool {
				e.shape[0]--
				e.data = e.data[:e.shape[0]*e.shape[1]*4]
				return true
			})
		}, []string{qa + "_scale_inv", "weight_block_size"}},
		{"kv_b_proj scale of three dims", true, func(t *testing.T, d string) {
			rewriteShard(t, d, kvb+"_scale_inv", func(e *stEntry) bool {
				e.shape = []int{1, e.shape[0], e.shape[1]}
				return true
			})
		}, []string{kvb + "_scale_inv"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := copyDir(t, fp8Dir)
			if c.kimi {
				editConfig(t, d, func(m map[string]any) { m["model_type"] = "kimi_k2" })
			}
			c.bad(t, d)
			expectFailure(t, d, Options{}, c.wants...)
		})
	}
}
