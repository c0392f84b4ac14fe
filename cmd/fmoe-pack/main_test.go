package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/internal/cliutil"
)

// TestUsageExit: bad invocations exit 2 before anything is read or written;
// a failure at run time exits 1.
func TestUsageExit(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	in := "../../testdata/tiny/mlx-4bit"
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"convert", "--in", in, "--out", out, "--bits", "3"}, 2, "--bits 3: want 2, 4, 8, 16"},
		{[]string{"convert", "--in", in, "--out", out, "--dense-bits", "2"}, 2, "--dense-bits 2: want 4, 8, 16"},
		{[]string{"convert", "--in", in, "--out", out, "--rule", "best"}, 2, "--rule best: want minmax, mlx, lsq"},
		{[]string{"convert", "--in", in, "--out", out, "--workers", "-1"}, 2, "--workers -1: want 0 or more"},
		{[]string{"convert", "--in", in}, 2, "--out is required"},
		{[]string{"convert", "--in", in, "--out", out, "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"convert", "--in", in, "--out", out, "--bits", "four"}, 2, `invalid value "four" for flag -bits`},
		{[]string{"synth", "--preset", "qwen9", "--out", out}, 2, "--preset qwen9: want qwen3.5-397b-a17b"},
		{[]string{"synth", "--preset", "tiny", "--out", out, "--layout", "gguf"}, 2, "--layout gguf: want mlx-4bit, hf"},
		{[]string{"synth", "--preset", "qwen3.5-35b-a3b", "--out", out, "--layers", "41"}, 2, "--layers 41: qwen3.5-35b-a3b has 40 layers (want 1 to 40, or 0 for all)"},
		{[]string{"synth", "--preset", "tiny", "--out", out, "--layers", "-1"}, 2, "--layers -1: want 0 or more"},
		{[]string{"synth", "--preset", "deepseek-v3-671b", "--out", out, "--layers", "2"}, 2, "--layers 2: deepseek-v3-671b's first 3 layers are dense, so 2 layers have no experts (want at least 4 for one MoE layer)"},
		{[]string{"synth", "--preset", "glm-4.5-355b", "--out", out, "--layers", "3"}, 2, "want at least 4 for one MoE layer"},
		{[]string{"synth", "--preset", "kimi-k2-1t", "--out", out, "--layers", "1"}, 2, "want at least 2 for one MoE layer"},
		{[]string{"synth", "--preset", "deepseek-v3-tiny", "--out", out, "--layout", "mlx-4bit"}, 2, "--layout mlx-4bit: deepseek-v3-tiny's shapes do not split into mlx-lm's groups of 64 inputs (want --layout hf)"},
		{[]string{"synth", "--list", "--preset", "tiny"}, 2, "--list prints every preset's sizes and writes nothing: it takes no --preset"},
		{[]string{"synth", "--list", "--out", out}, 2, "it takes no --out"},
		{[]string{"synth", "--out", out}, 2, "--preset is required (or --list)"},
		{[]string{"convert", "--in", in, "--out", out, "--stream"}, 2, "--stream packs while downloading from the Hub: it needs --in hf://ORG/NAME[@REVISION]"},
		{[]string{"convert", "--in", "hf://org/name", "--out", out, "--stream", "--downloads", "0"}, 2, "--downloads 0: want 1 or more"},
		{[]string{"convert", "--in", "hf://org/name", "--out", out, "--stream", "--downloads", "-3"}, 2, "--downloads -3: want 1 or more"},
		{[]string{"convert", "--in", "hf://org/name", "--out", out, "--downloads", "4"}, 2, "--downloads 4: it is the number of shards --stream downloads at once"},
		{[]string{"convert", "--in", "hf://org", "--out", out, "--stream"}, 2, `--in "hf://org": want hf://ORG/NAME[@REVISION]`},
		{[]string{"convert", "--in", in, "--out", in}, 2, "--out " + in + " already exists (use --force to replace it"},
		{[]string{"synth", "--preset", "tiny", "--out", in}, 2, "--out " + in + " already exists (use --force to replace it"},
		{[]string{"requant", "--model", out, "--bits", "3"}, 2, "--bits 3"},
		{[]string{"lz4", "--model", out, "--workers", "-4"}, 2, "--workers -4: want 0 or more"},
		{[]string{"lz4"}, 2, "--model is required"},
		{[]string{"pack"}, 2, `unknown command "pack"`},
		{[]string{"help", "pack"}, 2, "No help topic"},
		{[]string{"convert", "--in", filepath.Join(t.TempDir(), "missing"), "--out", out}, 1, "config.json"},
	} {
		var stdout, stderr strings.Builder
		code := cliutil.RunArgs(newApp(), append([]string{"fmoe-pack"}, tc.args...), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.msg) {
			t.Errorf("%q: exit %d, %q; want %d, %q", tc.args, code, stderr.String(), tc.code, tc.msg)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused invocation wrote %s", out)
	}
}
