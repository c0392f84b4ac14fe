package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/runtime/routetrace"
)

// TestGenerateRecordRoute: --record-route leaves the tokens unchanged and
// writes a valid trace of the prompt plus the tokens fed back; replayed
// with --route-trace it gives the same tokens and is itself recorded
// again bit for bit; --expert-load places experts over two devices by it.
func TestGenerateRecordRoute(t *testing.T) {
	dir := t.TempDir()
	args := []string{"generate", "--model", "$MODEL", "--ids", "1,5,9,13", "--tokens", "6", "--backend", "cpu", "--threads", "1"}
	plain, err := runApp(t, "", args...)
	if err != nil || len(strings.Fields(plain)) != 6 {
		t.Fatalf("without recording: %q, %v", plain, err)
	}
	rec := filepath.Join(dir, "rec.fmrt")
	out, err := runApp(t, "", append(slices.Clone(args), "--record-route", rec)...)
	if err != nil || out != plain {
		t.Fatalf("recording: %q, %v; want the tokens %q", out, err, plain)
	}
	tr, err := routetrace.Load(rec) // validates ids, K and weights
	if err != nil {
		t.Fatal(err)
	}
	if tr.Layers != 8 || tr.Experts != 16 || tr.K != 4 || tr.Tokens != 4+6-1 || tr.Model != "recorded" {
		t.Fatalf("recorded %+v, want 8 layers × 16 experts, K=4, 9 positions", tr.Header)
	}
	if err := tr.Check(8, 16, 4, 9); err != nil {
		t.Fatal(err)
	}
	for i, w := range tr.Weights {
		if w <= 0 { // every layer of the tiny model is routed
			t.Fatalf("entry %d: weight %v", i, w)
		}
	}
	again := filepath.Join(dir, "again.fmrt")
	out, err = runApp(t, "", append(slices.Clone(args), "--route-trace", rec, "--record-route", again)...)
	if err != nil || out != plain {
		t.Fatalf("replay: %q, %v; want %q", out, err, plain)
	}
	tr2, err := routetrace.Load(again)
	if err != nil || !slices.Equal(tr2.IDs, tr.IDs) || !slices.Equal(tr2.Weights, tr.Weights) {
		t.Fatalf("the replay routed otherwise than the recording (%v)", err)
	}
	out, err = runApp(t, "", append(slices.Clone(args), "--gpus", "0,1", "--expert-load", rec)...)
	if err != nil || out != plain {
		t.Fatalf("--expert-load of the recording over two devices: %q, %v; want %q", out, err, plain)
	}
	// Replaying with more tokens than were recorded is refused up front.
	long := append(slices.Clone(args), "--route-trace", rec)
	long[6] = "7"
	if _, err := runApp(t, "", long...); err == nil || !strings.Contains(err.Error(), "covers 9 token positions, the run needs 10") {
		t.Errorf("--tokens 7 over a 6-token recording: %v", err)
	}
}

// TestRecordRouteUsage: a --record-route path that exists, lies inside the
// model, is an input or cannot be written exits 2 naming the flag and the
// file, before anything runs, and leaves the existing file as it was.
func TestRecordRouteUsage(t *testing.T) {
	dir := t.TempDir()
	model, err := tinyPack()
	if err != nil {
		t.Fatal(err)
	}
	exists := filepath.Join(dir, "exists.fmrt")
	if err := os.WriteFile(exists, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	gen := []string{"generate", "--model", "$MODEL", "--ids", "1,5", "--tokens", "2", "--backend", "cpu", "--threads", "1"}
	for _, tc := range []struct {
		path string
		more []string
		msg  string
	}{
		{exists, nil, "--record-route " + exists + " already exists"},
		{filepath.Join(model, "config.json"), nil, "already exists"},
		{filepath.Join(model, "routes.fmrt"), nil, "refusing to write --record-route"},
		{filepath.Join(dir, "missing", "r.fmrt"), nil, "cannot write in " + filepath.Join(dir, "missing")},
		{exists, []string{"--route-trace", exists}, "already exists"},
	} {
		args := append(append(slices.Clone(gen), tc.more...), "--record-route", tc.path)
		_, err := runApp(t, "", args...)
		var msg strings.Builder
		if code := cliutil.Status(err, "fmoe-run", &msg); code != 2 || !strings.Contains(msg.String(), tc.msg) {
			t.Errorf("%q: exit %d, %q; want 2, %q", args, code, msg.String(), tc.msg)
		}
	}
	if b, _ := os.ReadFile(exists); string(b) != "keep me" {
		t.Errorf("the existing file was changed: %q", b)
	}
	if _, err := os.Stat(filepath.Join(model, "routes.fmrt")); err == nil {
		t.Error("a trace was written into the model")
	}
}
