package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/runtime/routetrace"
)

// TestRouteStatsCommand: route-stats reports on a recorded trace, leaving
// its dense layer out, and on a generated one; a missing, foreign or
// corrupt file exits 2 naming --trace and the file.
func TestRouteStatsCommand(t *testing.T) {
	dir := t.TempDir()
	r, err := routetrace.NewRecorder(3, 16, 4)
	if err != nil {
		t.Fatal(err)
	}
	for pos := 0; pos < 40; pos++ {
		for l := 1; l < 3; l++ { // layer 0 is dense
			r.Record(l, pos, []int{(pos + l) % 6, 6 + pos%3, 14 + pos%2, 13}, []float32{0.4, 0.3, 0.2, 0.1})
		}
	}
	tr, err := r.Trace()
	if err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(dir, "rec.fmrt")
	if err := tr.Save(rec); err != nil {
		t.Fatal(err)
	}
	stdout, err := runPack(t, "route-stats", "--trace", rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"3 layers x 16 experts, K=4, 40 tokens, model recorded", "left out: [0]",
		"mean over 2 layers", "\n16       ", "distinct experts over 30 tokens", "consecutive-token overlap"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	gen := filepath.Join(dir, "gen.fmrt")
	if _, err := runPack(t, "route-trace", "--preset", "qwen3.5-397b-a17b", "--layers", "2", "--tokens", "40", "--out", gen); err != nil {
		t.Fatal(err)
	}
	if stdout, err := runPack(t, "route-stats", "--trace", gen); err != nil || strings.Contains(stdout, "left out") || !strings.Contains(stdout, "top 4") {
		t.Errorf("a generated trace: %v\n%s", err, stdout)
	}
	junk := filepath.Join(dir, "junk.fmrt")
	os.WriteFile(junk, []byte("not a trace"), 0o644)
	corrupt := filepath.Join(dir, "corrupt.fmrt")
	b, _ := os.ReadFile(rec)
	b[len(b)/2] ^= 1
	os.WriteFile(corrupt, b, 0o644)
	for path, want := range map[string]string{
		filepath.Join(dir, "missing.fmrt"): "no such file",
		junk:                               "not a routing trace",
		corrupt:                            "checksum mismatch",
	} {
		_, err := runPack(t, "route-stats", "--trace", path)
		var msg strings.Builder
		if code := cliutil.Status(err, "fmoe-pack", &msg); code != 2 || !strings.Contains(msg.String(), "--trace") ||
			!strings.Contains(msg.String(), path) || !strings.Contains(msg.String(), want) {
			t.Errorf("%s: exit %d, %q; want 2 naming --trace, the file and %q", filepath.Base(path), code, msg.String(), want)
		}
	}
}
