package pack

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/fmoe/fmoe/format"
)

func configOf(t *testing.T, p *Preset) *format.Config {
	t.Helper()
	raw, _ := json.Marshal(synthConfig(p, p.Layers, true))
	c, err := format.ParseConfig(p.Name, raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// TestSynthLayout: with no --layout, synth writes mlx-4bit where mlx-lm's
// groups of 64 fit and hf where they do not (deepseek-v3-tiny's 48-wide
// latent), so every preset's default works; the written config says which.
func TestSynthLayout(t *testing.T) {
	for _, p := range Presets {
		got, err := SynthLayout(p.Name)
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		want := "mlx-4bit"
		if mlxGroupsFit(configOf(t, &p), p.Name) != nil {
			want = "hf"
		}
		if got != want {
			t.Errorf("%s: %s, want %s", p.Name, got, want)
		}
	}
	if l, _ := SynthLayout("deepseek-v3-tiny"); l != "hf" {
		t.Errorf("deepseek-v3-tiny: %s, want hf", l)
	}
	if l, _ := SynthLayout("qwen3.5-35b-a3b"); l != "mlx-4bit" {
		t.Errorf("qwen3.5-35b-a3b: %s, want mlx-4bit", l)
	}
	if _, err := SynthLayout("nope"); err == nil {
		t.Error("unknown preset: no error")
	}
	out := filepath.Join(t.TempDir(), "dt")
	if _, err := Synth(context.Background(), SynthOptions{Preset: "deepseek-v3-tiny", Out: out, Seed: 1}); err != nil {
		t.Fatalf("deepseek-v3-tiny with the default layout: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(out, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil || cfg["quantization"] != nil {
		t.Errorf("deepseek-v3-tiny default: quantization %v (%v), want the hf layout (none)", cfg["quantization"], err)
	}
}
