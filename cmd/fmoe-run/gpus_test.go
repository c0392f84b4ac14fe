package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/routetrace"
)

// TestGenerateGPUs: --gpus 0,1 and 0,1,2 on the CPU (logical devices, the
// in-process exchange) generate the tokens one device does, and the reply
// of the chat template too, with the experts placed evenly or by an
// --expert-load trace; bad lists and a trace of another shape are refused.
func TestGenerateGPUs(t *testing.T) {
	ids := []string{"generate", "--model", "$MODEL", "--ids", "1,5,9,13", "--tokens", "8", "--backend", "cpu", "--threads", "1"}
	want, err := runApp(t, "", append(ids, "--gpus", "0")...)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	trace := func(name string, layers, experts int) string {
		tr, err := routetrace.Generate(routetrace.Options{Layers: layers, Experts: experts, K: 4, Tokens: 64, Seed: 3, Params: routetrace.Fitted["zipf"]})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := tr.Save(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	load := trace("load.fmrt", 8, 16)
	for _, more := range [][]string{{"--gpus", "0,1"}, {"--gpus", "0,1,2"}, {"--gpus", "0,1", "--expert-load", load}} {
		got, err := runApp(t, "", append(ids, more...)...)
		if err != nil {
			t.Fatalf("%v: %v", more, err)
		}
		if got != want || len(strings.Fields(got)) != 8 {
			t.Errorf("%v generates %q, one device %q", more, got, want)
		}
	}
	reply := []string{"generate", "--model", "$MODEL", "--prompt", "Count from 1 to 5", "--tokens", "64", "--backend", "cpu", "--threads", "1", "--gpus", "0,1"}
	if got, err := runApp(t, "", reply...); err != nil || got != "1, 2, 3, 4, 5.\n" {
		t.Errorf("reply over 2 devices %q, %v", got, err)
	}
	for _, c := range []struct {
		more []string
		want string
	}{
		{[]string{"--gpus", "0,0"}, "listed twice"},
		{[]string{"--gpus", "x"}, "--gpus"},
		{[]string{"--gpus", "0,1", "--expert-load", trace("shape.fmrt", 8, 32)}, "8 layers × 32 experts, the model has 8 × 16"},
		{[]string{"--gpus", "0,1", "--expert-load", filepath.Join(dir, "missing.fmrt")}, "--expert-load"},
	} {
		if _, err := runApp(t, "", append(ids, c.more...)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error saying %q", c.more, err, c.want)
		}
	}
}
