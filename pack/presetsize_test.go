package pack

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
)

// TestPresetSizes pins the real presets' figures that can be checked by hand against their
// published configs: an expert is 3·H·I weights at b bits plus bf16 scales and biases per
// group of 64 (each part rounded up to 4096 bytes); MLA caches kv_lora_rank + qk_rope_head_dim
// values per layer.
func TestPresetSizes(t *testing.T) {
	want := map[string]struct {
		layers, experts, k int
		expert4            int64
		kv                 int64 // fmoe's float32 cache per token
	}{
		// 3 × 7168×2048 × 0.5 B + 6 × 7168×2048/64 × 2 B = 22,020,096 + 2,752,512.
		"deepseek-v3-671b": {58, 256, 8, 24772608, 61 * (512 + 64) * 4},
		"kimi-k2-1t":       {60, 384, 8, 24772608, 61 * (512 + 64) * 4},
		// 3 × 5120×1536 × 0.5 + 6 × 5120×1536/64 × 2; 92 layers × 2·8·128 × 4.
		"glm-4.5-355b":          {89, 160, 8, 11796480 + 1474560, 92 * 2 * 8 * 128 * 4},
		"qwen3-235b-a22b":       {94, 128, 8, 9437184 + 1179648, 94 * 2 * 4 * 128 * 4},
		"qwen3-coder-480b-a35b": {62, 160, 8, 23592960 + 2949120, 62 * 2 * 8 * 128 * 4},
		// 3 × 2048×512 × 0.5 = 1,572,864 + 196,608; 12 of 48 layers full attention.
		"qwen3-next-80b-a3b": {48, 512, 10, 1572864 + 196608, 12 * 2 * 2 * 256 * 4},
	}
	for i := range Presets {
		p := &Presets[i]
		w, ok := want[p.Name]
		if !ok {
			continue
		}
		delete(want, p.Name)
		s, err := SizeOf(p)
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		if s.ExpertLayers != w.layers || s.Experts != w.experts || s.K != w.k || s.Expert4 != w.expert4 || s.KVBytes != w.kv {
			t.Errorf("%s: %d layers with experts, %d experts, K %d, expert %d B, KV %d B; want %+v", p.Name, s.ExpertLayers, s.Experts, s.K, s.Expert4, s.KVBytes, w)
		}
		if s.Token4 != int64(w.k*w.layers)*w.expert4 {
			t.Errorf("%s: %d B a token at 4 bits", p.Name, s.Token4)
		}
	}
	if len(want) != 0 {
		t.Errorf("presets missing: %v", want)
	}
	// DeepSeek-V3's latent in bf16 is the ~70 KB per token usually quoted; per-head keys and
	// values in bf16 would be 61 × 128 × (192 + 128) × 2 = 5.0 MB.
	s, _ := SizeOf(presetNamed(t, "deepseek-v3-671b"))
	if s.KVBytes/2 != 70272 || s.KVExpanded != 61*128*320*2 {
		t.Errorf("deepseek-v3-671b KV: latent bf16 %d, expanded %d", s.KVBytes/2, s.KVExpanded)
	}
}

// TestFamiliesDocSizeTable: docs/families.md holds exactly the table the code computes.
func TestFamiliesDocSizeTable(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSizeTable(&b, true); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../docs/families.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), b.String()) {
		t.Errorf("docs/families.md lacks the size table; put `fmoe-pack synth --list`'s output there:\n%s", b.String())
	}
}

func presetNamed(t *testing.T, name string) *Preset {
	for i := range Presets {
		if Presets[i].Name == name {
			return &Presets[i]
		}
	}
	t.Fatalf("no preset %s", name)
	return nil
}

// TestRealPresetConfigs: each real preset's config parses as its family with the published
// routing, and a one-layer hf synth's header (no data written past it) names the right tensors.
func TestRealPresetConfigs(t *testing.T) {
	for _, c := range []struct {
		name, arch string
		dense      int
	}{{"deepseek-v3-671b", format.ArchDeepseekV3, 3}, {"kimi-k2-1t", format.ArchDeepseekV3, 1}, {"glm-4.5-355b", format.ArchGLM4MoE, 3},
		{"qwen3-235b-a22b", format.ArchQwen3MoE, 0}, {"qwen3-coder-480b-a35b", format.ArchQwen3MoE, 0}, {"qwen3-next-80b-a3b", format.ArchQwen35MoE, 0}} {
		p := presetNamed(t, c.name)
		cfg := configOf(t, p)
		if cfg.Architecture != c.arch {
			t.Errorf("%s: architecture %s", c.name, cfg.Architecture)
		}
		for l := 0; l < cfg.NumHiddenLayers; l++ {
			if cfg.Dense(l) != (l < c.dense) {
				t.Errorf("%s: layer %d dense %v", c.name, l, cfg.Dense(l))
			}
		}
		if err := mlxGroupsFit(cfg, c.name); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	ds := configOf(t, presetNamed(t, "deepseek-v3-671b"))
	if m := ds.MLA; m == nil || m.QLoraRank != 1536 || m.KVLoraRank != 512 || ds.HeadDim != 192 || ds.Yarn == nil || ds.Yarn.Factor != 40 {
		t.Errorf("deepseek-v3-671b MLA %+v yarn %+v", ds.MLA, ds.Yarn)
	}
	if k := configOf(t, presetNamed(t, "kimi-k2-1t")); k.NumAttentionHeads != 64 || k.NumExperts != 384 {
		t.Errorf("kimi-k2-1t: %d heads, %d experts", k.NumAttentionHeads, k.NumExperts)
	}
}

// The tiny DeepSeek-V3 shape's 48-wide latent is no whole number of groups: its MLX layout is
// refused before anything is written (with no layout asked for, it is written in hf:
// TestSynthLayout).
func TestSynthMLXGroupsRefused(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x")
	_, err := Synth(context.Background(), SynthOptions{Preset: "deepseek-v3-tiny", Layout: "mlx-4bit", Out: out, Seed: 1})
	if err == nil || !strings.Contains(err.Error(), "kv_b_proj") || !strings.Contains(err.Error(), "--layout hf") {
		t.Fatalf("err %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s left behind: %v", out, err)
	}
}

// TestSynthDeepseekMLX: a DeepSeek-V3 shape whose matrices are whole groups (as the real
// presets' are) synthesises in the mlx-4bit layout and packs, dense first layer included: the
// path scripts/gpu-families.sh takes with deepseek-v3-671b and kimi-k2-1t.
func TestSynthDeepseekMLX(t *testing.T) {
	p := *presetNamed(t, "deepseek-v3-tiny")
	p.Name = "deepseek-v3-groups"
	p.Config = mlaConfig(4, 2, 2.5, 10000, 40, 8192)
	p.Config["kv_lora_rank"], p.Config["q_lora_rank"], p.Config["qk_nope_head_dim"], p.Config["qk_rope_head_dim"], p.Config["v_head_dim"] = 64, 64, 32, 32, 32
	Presets = append(Presets, p)
	defer func() { Presets = Presets[:len(Presets)-1] }()
	dir := filepath.Join(t.TempDir(), "ck")
	if _, err := Synth(context.Background(), SynthOptions{Preset: p.Name, Layers: 3, Out: dir, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	pk := convert(t, dir, Options{})
	c := &pk.m.Config
	if pk.m.Source.Layout != LayoutMLX || c.Architecture != format.ArchDeepseekV3 || c.MLA == nil || c.MLA.KVLoraRank != 64 || !c.Dense(0) || pk.m.Experts[0].Layers[1].Size == 0 {
		t.Errorf("layout %s, architecture %s, MLA %+v, dense(0) %v", pk.m.Source.Layout, c.Architecture, c.MLA, c.Dense(0))
	}
}
