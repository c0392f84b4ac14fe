package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/internal/cliutil"
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

// TestGPUsUsageExit: a bad --gpus list or --expert-load file exits 2 with
// the flag, the file and what was expected, in every command that opens a
// model, before any device is opened; with one device the file is still
// checked.
func TestGPUsUsageExit(t *testing.T) {
	dir := t.TempDir()
	trace := func(name string, layers, experts int) string {
		tr, err := routetrace.Generate(routetrace.Options{Layers: layers, Experts: experts, K: 4, Tokens: 8, Seed: 1, Params: routetrace.Fitted["zipf"]})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := tr.Save(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	junk := filepath.Join(dir, "junk.fmrt")
	if err := os.WriteFile(junk, []byte("not a trace"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.fmrt")
	gen := []string{"generate", "--model", "$MODEL", "--ids", "1,5", "--tokens", "2", "--backend", "cpu", "--threads", "1"}
	for _, tc := range []struct {
		cmd  []string
		more []string
		msg  string
	}{
		{gen, []string{"--gpus", "0,,1"}, `--gpus "0,,1": an empty item`},
		{gen, []string{"--gpus", "-1"}, "--gpus: device -1 is negative"},
		{gen, []string{"--gpus", "1,0,1"}, "--gpus: device 1 is listed twice"},
		{gen, []string{"--gpus", "0,one"}, `"one" is not a device number`},
		{[]string{"chat", "--model", "$MODEL", "--backend", "cpu"}, []string{"--gpus", "0,,1"}, `--gpus "0,,1"`},
		{[]string{"serve", "--model", "$MODEL", "--backend", "cpu"}, []string{"--gpus", "x"}, `--gpus "x"`},
		{[]string{"eval", "--model", "$MODEL", "--backend", "cpu", "--eval", "../../models/fmoe-tiny-chat/eval/eval.json"}, []string{"--gpus", "0,0"}, "listed twice"},
		{gen, []string{"--gpus", "0,1", "--expert-load", missing}, "--expert-load: route trace: open " + missing},
		{gen, []string{"--gpus", "0,1", "--expert-load", junk}, "--expert-load: route trace " + junk + ": not a routing trace"},
		{gen, []string{"--gpus", "0", "--expert-load", junk}, "not a routing trace"},
		{gen, []string{"--expert-load", missing}, "--expert-load"},
		{gen, []string{"--gpus", "0,1", "--expert-load", trace("layers.fmrt", 7, 16)}, "a trace of 7 layers × 16 experts, the model has 8 × 16"},
		{gen, []string{"--gpus", "0,1", "--expert-load", trace("experts.fmrt", 8, 8)}, "a trace of 8 layers × 8 experts, the model has 8 × 16"},
	} {
		args := append(append([]string{}, tc.cmd...), tc.more...)
		_, err := runApp(t, "", args...)
		var msg strings.Builder
		if code := cliutil.Status(err, "fmoe-run", &msg); code != 2 || !strings.Contains(msg.String(), tc.msg) {
			t.Errorf("%q: exit %d, %q; want 2, %q", args, code, msg.String(), tc.msg)
		}
	}
}
