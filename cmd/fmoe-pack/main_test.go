package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
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
		{[]string{"stack", "--model", in, "--out", out, "--layers", "0"}, 2, "--layers 0: want 1 to 1024"},
		{[]string{"stack", "--model", in, "--out", out, "--layers", "2", "--layer", "-1"}, 2, "--layer -1: want 0 or more"},
		{[]string{"stack", "--model", in, "--layers", "2"}, 2, "--out is required"},
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

// TestStackCommand: fmoe-pack stack writes a pack of the asked-for layers that opens, and
// refuses a layer the model lacks with exit 1 and nothing written.
func TestStackCommand(t *testing.T) {
	dir := t.TempDir()
	model, out := filepath.Join(dir, "model"), filepath.Join(dir, "stacked")
	run := func(args ...string) (int, string, string) {
		var stdout, stderr strings.Builder
		code := cliutil.RunArgs(newApp(), append([]string{"fmoe-pack"}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	if code, _, stderr := run("convert", "--in", "../../testdata/tiny/hf", "--out", model, "-q"); code != 0 {
		t.Fatalf("convert: exit %d: %s", code, stderr)
	}
	if code, _, stderr := run("stack", "--model", model, "--out", out, "--layer", "8", "--layers", "2", "-q"); code != 1 || !strings.Contains(stderr, "--layer 8: "+model+" has layers 0 to 7") {
		t.Errorf("layer 8 of 8: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused stack wrote %s", out)
	}
	if code, _, stderr := run("stack", "--model", model, "--out", out, "--layer", "3", "--layers", "2", "-q"); code != 0 {
		t.Fatalf("stack: exit %d: %s", code, stderr)
	}
	m, err := format.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.NumHiddenLayers != 2 || m.Config.LayerTypes[1] != format.FullAttention {
		t.Errorf("stacked layer 3 twice: %d layers, %v", m.Config.NumHiddenLayers, m.Config.LayerTypes)
	}
}
