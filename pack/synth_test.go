package pack

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
)

func TestSynthPacks(t *testing.T) {
	for _, layout := range []string{"mlx-4bit", "hf"} {
		t.Run(layout, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ck")
			if _, err := Synth(context.Background(), SynthOptions{Preset: "tiny", Layers: 4, Layout: layout, Out: dir, Seed: 1}); err != nil {
				t.Fatal(err)
			}
			p := convert(t, dir, Options{})
			if p.m.Config.NumHiddenLayers != 4 || p.m.Config.HiddenSize != 128 {
				t.Errorf("config %+v", p.m.Config)
			}
			want := LayoutMLX
			if layout == "hf" {
				want = LayoutHF
			}
			if p.m.Source.Layout != want {
				t.Errorf("layout %s", p.m.Source.Layout)
			}
		})
	}
}

// The 397B preset's expert block must be the seed's exact 7,077,888 bytes at 4 bits.
func TestPreset397BExpertSize(t *testing.T) {
	c := configOf(t, &Presets[0])
	set, err := expertSetLayout(c, 4, 64)
	if err != nil {
		t.Fatal(err)
	}
	if set.Stride != 7077888 {
		t.Errorf("397B 4-bit expert stride %d, want 7077888", set.Stride)
	}
	set2, _ := expertSetLayout(c, 2, 64)
	if set2.Stride != 3932160 {
		t.Errorf("397B 2-bit expert stride %d, want 3932160", set2.Stride)
	}
}

func TestSynthErrors(t *testing.T) {
	for _, o := range []SynthOptions{{Preset: "gpt5"}, {Preset: "tiny", Layers: 99}, {Preset: "tiny", Layout: "gguf"}, {Preset: "deepseek-v3-671b", Layers: 3}} {
		o.Out = filepath.Join(t.TempDir(), "x")
		if _, err := Synth(context.Background(), o); err == nil || !strings.Contains(err.Error(), "want") && !strings.Contains(err.Error(), "have") && !strings.Contains(err.Error(), "has") {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

// TestSynthFamilies: each family's test shape synthesises in the hf
// and mlx-community layouts, with its dense layers, and packs.
func TestSynthFamilies(t *testing.T) {
	for _, c := range []struct{ preset, arch string }{{"qwen3-moe-tiny", format.ArchQwen3MoE}, {"glm4-moe-tiny", format.ArchGLM4MoE}} {
		t.Run(c.preset, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ck")
			if _, err := Synth(context.Background(), SynthOptions{Preset: c.preset, Layout: "hf", Out: dir, Seed: 1}); err != nil {
				t.Fatal(err)
			}
			p := convert(t, dir, Options{Bits: 4})
			cfg := &p.m.Config
			if cfg.Architecture != c.arch || !cfg.Dense(0) || cfg.Dense(1) || p.m.Experts[0].Layers[0].Size != 0 {
				t.Errorf("%s: architecture %q, mlp_types %v, layer 0 experts %d bytes", c.preset, cfg.Architecture, cfg.MLPTypes, p.m.Experts[0].Layers[0].Size)
			}
			// The mlx-community layout of the family (no language_model. prefix, stacked
			// switch_mlp experts only in MoE layers, 8-bit gates) packs to the same model.
			mdir := filepath.Join(t.TempDir(), "mlx")
			if _, err := Synth(context.Background(), SynthOptions{Preset: c.preset, Out: mdir, Seed: 1}); err != nil {
				t.Fatal(err)
			}
			pm := convert(t, mdir, Options{})
			if pm.m.Source.Layout != LayoutMLX || pm.m.Config.Architecture != c.arch || !pm.m.Config.Dense(0) || pm.m.Experts[0].Layers[1].Size != p.m.Experts[0].Layers[1].Size {
				t.Errorf("mlx %s: layout %s, architecture %q, layer 1 experts %d bytes (hf: %d)", c.preset, pm.m.Source.Layout, pm.m.Config.Architecture,
					pm.m.Experts[0].Layers[1].Size, p.m.Experts[0].Layers[1].Size)
			}
		})
	}
}

// A source without a tokenizer still packs, but convert says at once what verify will say.
func TestConvertWarnsWithoutTokenizer(t *testing.T) {
	src := copyDir(t, tiny+"mlx-4bit")
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json"} {
		if err := os.Remove(filepath.Join(src, name)); err != nil {
			t.Fatal(err)
		}
	}
	var log bytes.Buffer
	if _, err := Convert(context.Background(), Options{In: src, Out: filepath.Join(t.TempDir(), "o"), Log: &log}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "warning: "+src+" has no tokenizer.json or tokenizer_config.json") {
		t.Errorf("log %q", log.String())
	}
	log.Reset()
	if _, err := Convert(context.Background(), Options{In: tiny + "mlx-4bit", Out: filepath.Join(t.TempDir(), "o"), Log: &log}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log.String(), "tokenizer") {
		t.Errorf("warned about a tokenizer that is there: %q", log.String())
	}
}

// TestSplitShard: expert shards are cut at whole tensors, none over the cap unless one tensor is.
func TestSplitShard(t *testing.T) {
	mk := func(sizes ...int) []synthTensor {
		var ts []synthTensor
		for i, n := range sizes {
			ts = append(ts, synthTensor{name: fmt.Sprint(i), dtype: format.DTypeU32, shape: []int{n}})
		}
		return ts
	}
	got := splitShard(mk(4, 4, 4, 10, 1, 1), 32) // U32: 4 bytes an element
	var sizes [][]int64
	for _, s := range got {
		var row []int64
		for _, t := range s {
			row = append(row, t.size())
		}
		sizes = append(sizes, row)
	}
	if fmt.Sprint(sizes) != "[[16 16] [16] [40] [4 4]]" {
		t.Fatalf("split %v", sizes)
	}
	if len(splitShard(nil, 8)) != 0 {
		t.Fatal("an empty layer makes no shard")
	}
}
