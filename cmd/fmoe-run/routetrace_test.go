package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/routetrace"
)

// TestGenerateRouteTrace: --route-trace replays a matching trace and
// refuses, naming the file and the mismatch, one that does not fit.
func TestGenerateRouteTrace(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, layers, experts, k, tokens int) string {
		tr, err := routetrace.Generate(routetrace.Options{Layers: layers, Experts: experts, K: k, Tokens: tokens, Seed: 1, Params: routetrace.Fitted["zipf"]})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := tr.Save(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	args := []string{"generate", "--model", "$MODEL", "--ids", "1,5,9,13", "--tokens", "6", "--backend", "cpu"}
	good := write("good.fmrt", 8, 16, 4, 10)
	out, err := runApp(t, "", append(args, "--route-trace", good)...)
	if err != nil || len(strings.Fields(out)) != 6 {
		t.Fatalf("a matching trace: %q, %v", out, err)
	}
	k2 := write("k2.fmrt", 8, 16, 2, 10)
	if _, err := runApp(t, "", append(args, "--route-trace", k2, "--k", "2")...); err != nil {
		t.Errorf("a K=2 trace with --k 2: %v", err)
	}
	corrupt := filepath.Join(dir, "corrupt.fmrt")
	b, _ := os.ReadFile(good)
	b[len(b)/2] ^= 0x40
	os.WriteFile(corrupt, b, 0o644)
	notTrace := filepath.Join(dir, "config.json")
	os.WriteFile(notTrace, []byte(`{"layers": 8}`), 0o644)
	for _, c := range []struct {
		path string
		more []string
		want string
	}{
		{write("layers.fmrt", 7, 16, 4, 10), nil, "the trace has 7 layers, the model 8"},
		{write("experts.fmrt", 8, 32, 4, 10), nil, "the trace has 32 experts per layer, the model 16"},
		{k2, nil, "the trace has K=2 experts per token, the model runs with K=4"},
		{good, []string{"--k", "3"}, "the model runs with K=3"},
		{write("short.fmrt", 8, 16, 4, 8), nil, "covers 8 token positions, the run needs 9"},
		{corrupt, nil, "checksum mismatch"},
		{notTrace, nil, "not a routing trace"},
		{filepath.Join(dir, "missing.fmrt"), nil, "no such file"},
	} {
		_, err := runApp(t, "", append(append(args, "--route-trace", c.path), c.more...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), filepath.Base(c.path)) {
			t.Errorf("%s %v: %v, want an error naming the file and %q", filepath.Base(c.path), c.more, err, c.want)
		}
	}
}
