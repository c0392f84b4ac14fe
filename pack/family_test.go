package pack

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
)

const glmFixture = "../testdata/arch/glm4_moe/hf"

// TestGLMDenseLayerAndMTP packs GLM-4.5 (layer 0 dense) with a
// multi-token-prediction layer added as the release stores it
// (model.layers.{num_hidden_layers}.*, num_nextn_predict_layers of them)
// and a stray layer after it: the MTP layer is skipped and said so, the
// stray one reported as unused, the dense layer's expert file is empty, the others hold every expert,
// and a 2-bit requant of the pack handles the empty layer too.
func TestGLMDenseLayerAndMTP(t *testing.T) {
	src := copyDir(t, glmFixture)
	writeSafetensors(t, filepath.Join(src, "mtp.safetensors"), []stEntry{
		{"model.layers.4.eh_proj.weight", "BF16", []int{2, 2}, make([]byte, 8)},
		{"model.layers.5.eh_proj.weight", "BF16", []int{2, 2}, make([]byte, 8)},
	})
	idxPath := filepath.Join(src, "model.safetensors.index.json")
	raw, _ := os.ReadFile(idxPath)
	var idx map[string]any
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	idx["weight_map"].(map[string]any)["model.layers.4.eh_proj.weight"] = "mtp.safetensors"
	idx["weight_map"].(map[string]any)["model.layers.5.eh_proj.weight"] = "mtp.safetensors"
	raw, _ = json.Marshal(idx)
	os.WriteFile(idxPath, raw, 0o644)

	var log bytes.Buffer
	p := convert(t, src, Options{Bits: 4, Log: &log})
	// num_nextn_predict_layers is 1: layer 4 is the MTP layer, layer 5 is not GLM's at all.
	if !strings.Contains(log.String(), "model.layers.4.* (multi-token prediction)") ||
		!strings.Contains(log.String(), "not used by the model") || !strings.Contains(log.String(), "model.layers.5.eh_proj.weight") {
		t.Errorf("log does not name the skipped MTP layer and the unused layer 5: %q", log.String())
	}
	if _, err := p.m.Tensor("model.layers.4.eh_proj.weight"); err == nil {
		t.Error("the MTP tensor was packed")
	}
	c := &p.m.Config
	if c.Architecture != format.ArchGLM4MoE || !c.Dense(0) || c.Dense(1) {
		t.Fatalf("architecture %q, mlp_types %v", c.Architecture, c.MLPTypes)
	}
	set := &p.m.Experts[0]
	for l, lf := range set.Layers {
		st, err := os.Stat(filepath.Join(p.dir, set.Dir, lf.File))
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(c.LayerExperts(l)) * set.Stride; st.Size() != want || lf.Size != want || len(lf.CRC32C) != c.LayerExperts(l) {
			t.Errorf("layer %d: file %d bytes, manifest %d bytes and %d checksums, want %d bytes", l, st.Size(), lf.Size, len(lf.CRC32C), want)
		}
	}
	p.expert(t, set, 3, 15) // checksummed and readable
	if _, err := p.m.Tensor("model.layers.0.mlp.gate_proj.weight"); err != nil {
		t.Error(err)
	}

	if _, err := Requant(context.Background(), RequantOptions{Model: p.dir, Bits: 2}); err != nil {
		t.Fatal(err)
	}
	m, err := format.Open(p.dir)
	if err != nil {
		t.Fatal(err)
	}
	two, err := m.ExpertSet(2)
	if err != nil {
		t.Fatal(err)
	}
	if two.Layers[0].Size != 0 || len(two.Layers[1].CRC32C) != c.NumExperts {
		t.Errorf("2-bit set: layer 0 %d bytes, layer 1 %d checksums", two.Layers[0].Size, len(two.Layers[1].CRC32C))
	}
}

// TestUnsupportedFamilyLeavesNothing: a checkpoint of a family fmoe does not
// run fails before anything is written, naming the families it runs.
func TestUnsupportedFamilyLeavesNothing(t *testing.T) {
	src := copyDir(t, glmFixture)
	editConfig(t, src, func(m map[string]any) {
		m["model_type"] = "mixtral"
		m["architectures"] = []string{"MixtralForCausalLM"}
	})
	expectFailure(t, src, Options{Bits: 16}, "mixtral", "qwen3_5_moe", "qwen3_moe", "glm4_moe", "deepseek_v3", "kimi_k2", "qwen3_next")
}

// TestFamilyBadInputs: a GLM-4.5 or Qwen3-MoE checkpoint missing a tensor
// only its family has, or with one misshapen, is refused by name and
// leaves nothing behind.
func TestFamilyBadInputs(t *testing.T) {
	for _, c := range []struct {
		src, tensor string
		mutate      func(e *stEntry) bool
		want        []string
	}{
		{glmFixture, "model.layers.2.mlp.gate.e_score_correction_bias", func(*stEntry) bool { return false },
			[]string{"model.layers.2.mlp.gate.e_score_correction_bias", "missing"}},
		{glmFixture, "model.layers.1.self_attn.k_proj.bias", func(e *stEntry) bool { e.shape = []int{32, 2}; return true },
			[]string{"model.layers.1.self_attn.k_proj.bias", "[32 2]", "[64]"}},
		{glmFixture, "model.layers.0.mlp.up_proj.weight", func(*stEntry) bool { return false },
			[]string{"model.layers.0.mlp.up_proj.weight", "missing"}},
		{"../testdata/arch/qwen3_moe/hf", "model.layers.3.self_attn.q_norm.weight", func(*stEntry) bool { return false },
			[]string{"model.layers.3.self_attn.q_norm.weight", "missing"}},
	} {
		t.Run(c.tensor, func(t *testing.T) {
			src := copyDir(t, c.src)
			rewriteShard(t, src, c.tensor, c.mutate)
			expectFailure(t, src, Options{Bits: 16}, c.want...)
		})
	}
}
