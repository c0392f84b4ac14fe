package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/pack"
)

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}

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
		app := newApp()
		app.Writer, app.ErrWriter = devnull, devnull
		app.ExitErrHandler = func(*cli.Context, error) {} // urfave/cli would os.Exit
		return exitCode(app.Run(append([]string{"fmoe-verify"}, args...)))
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
