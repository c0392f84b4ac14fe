package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/pack"
)

func TestExitCodes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	if _, err := pack.Convert(context.Background(), pack.Options{In: "../../testdata/tiny/mlx-4bit", Out: dir}); err != nil {
		t.Fatal(err)
	}
	devnull, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	stdout := os.Stdout
	os.Stdout = devnull // the report itself is tested in package verify
	defer func() { os.Stdout = stdout }()
	code := func(args ...string) int {
		return cliutil.RunArgs(newApp(), append([]string{"fmoe-verify"}, args...), devnull, devnull)
	}
	if c := code("--model", dir, "-q"); c != 0 {
		t.Errorf("clean pack: exit %d", c)
	}
	if c := code("--model", dir, "--json", "--source", "../../testdata/tiny/mlx-4bit"); c != 0 {
		t.Errorf("clean pack --json --source: exit %d", c)
	}
	if c := code("--model", filepath.Join(t.TempDir(), "missing")); c != 2 {
		t.Errorf("missing --model dir: exit %d, want 2", c)
	}
	if c := code("--model", dir, "extra"); c != 2 {
		t.Errorf("stray argument: exit %d, want 2", c)
	}
	if c := code(); c != 2 {
		t.Errorf("no --model: exit %d, want 2", c)
	}
	for _, args := range [][]string{{"--model", dir, "--bogus"}, {"--model", dir, "--workers", "x"}, {"golden", "--model", dir}, {"golden", "--model", dir, "--golden", "g", "extra"}, {"help", "bogus"}} {
		if c := code(args...); c != 2 {
			t.Errorf("%q: exit %d, want 2", args, c)
		}
	}
	if c := code("golden", "--model", dir, "--golden", "../../testdata/tiny/golden/mlx4.safetensors"); c != 0 {
		t.Errorf("golden mlx4 on the mlx pack: exit %d, want 0 (PASS)", c)
	}
	if c := code("golden", "--model", dir, "--golden", "../../testdata/tiny/golden/bf16.safetensors"); c != 1 {
		t.Errorf("golden bf16 on the 4-bit pack: exit %d, want 1 (FAIL)", c)
	}
	if c := code("golden", "--model", dir, "--golden", "../../testdata/tiny/golden/mlx4.safetensors", "--tol", "0"); c != 2 {
		t.Errorf("golden --tol 0: exit %d, want 2", c)
	}
	b, _ := os.ReadFile(filepath.Join(dir, format.WeightsName))
	b[len(b)/2] ^= 1
	os.WriteFile(filepath.Join(dir, format.WeightsName), b, 0o644)
	if c := code("--model", dir); c != 1 {
		t.Errorf("damaged pack: exit %d, want 1", c)
	}
}
