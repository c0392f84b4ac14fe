package golden

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fmoe/fmoe/pack"
	"github.com/fmoe/fmoe/runtime/model"
)

func packTiny(t *testing.T, src string, bits int) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "m")
	if _, err := pack.Convert(context.Background(), pack.Options{In: "../../testdata/tiny/" + src, Out: out, Bits: bits}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCheckPassesAndFails(t *testing.T) {
	dir := packTiny(t, "mlx-4bit", 0)
	m, err := model.Open(dir, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	f, err := Load("../../testdata/tiny/golden/mlx4.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Check(m, f, 1e-4)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mlx4: worst prompt %.2e at %d, generated %d/%d, worst %.2e", r.WorstPrompt, r.WorstPromptPos, r.SameTokens, r.Generated, r.WorstGenerated)
	if !r.Pass() {
		t.Fatalf("mlx4 golden fails: %+v", r)
	}
	// The bf16 golden against the 4-bit pack must fail: the check can fail.
	bf, err := Load("../../testdata/tiny/golden/bf16.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	r, err = Check(m, bf, 1e-4)
	if err != nil {
		t.Fatal(err)
	}
	if r.Pass() {
		t.Fatalf("bf16 golden passes on a 4-bit pack: %+v", r)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load("../../testdata/tiny/hf/config.json"); err == nil {
		t.Error("a JSON file loaded as golden")
	}
	if _, err := Load("../../testdata/tiny/hf/model-00001-of-00034.safetensors"); err == nil {
		t.Error("a weight shard loaded as golden")
	}
}
