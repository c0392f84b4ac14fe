package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/runtime/routetrace"
)

// runPack runs fmoe-pack in-process and returns its stdout.
func runPack(t *testing.T, args ...string) (string, error) {
	t.Helper()
	r, w, _ := os.Pipe()
	old := os.Stdout
	os.Stdout = w
	defer func() { os.Stdout = old }()
	got := make(chan string)
	go func() { b, _ := io.ReadAll(r); got <- string(b) }()
	app := &cli.App{Name: "fmoe-pack", Commands: []*cli.Command{routeTraceCmd(), routeStatsCmd()}, Writer: io.Discard, ErrWriter: io.Discard,
		ExitErrHandler: func(*cli.Context, error) {}}
	err := app.Run(append([]string{"fmoe-pack"}, args...))
	w.Close()
	return <-got, err
}

// TestRouteTraceCommand: the command writes the trace it reports on, with
// the preset's shape, and prints flash-moe's figures beside the trace's.
func TestRouteTraceCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "q.fmrt")
	args := []string{"route-trace", "--preset", "qwen3.5-397b-a17b", "--layers", "3", "--tokens", "250", "--out", out, "--seed", "4"}
	stdout, err := runPack(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := routetrace.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Layers != 3 || tr.Experts != 512 || tr.K != 10 || tr.Tokens != 250 || tr.Model != "mix" || tr.Seed != 4 {
		t.Errorf("header %+v", tr.Header)
	}
	for _, want := range []string{"16       ", "49%", "71%", "512      ", "distinct experts over 30 tokens", "flash-moe 43-57%",
		"consecutive-token overlap", "cross-layer correlation", "top 4"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	if _, err := runPack(t, args...); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("an existing --out: %v", err)
	}
	if _, err := runPack(t, append(args, "--force", "--k", "4", "--model", "zipf")...); err != nil {
		t.Fatal(err)
	}
	if tr, _ := routetrace.Load(out); tr.K != 4 || tr.Model != "zipf" {
		t.Errorf("--k 4 --model zipf: %+v", tr.Header)
	}
	for _, bad := range [][]string{
		{"--preset", "gpt5"}, {"--model", "gauss"}, {"--k", "600"}, {"--layers", "61"}, {"--tokens", "0"},
	} {
		a := append([]string{"route-trace", "--preset", "tiny", "--tokens", "10", "--out", filepath.Join(t.TempDir(), "x"), "--force"}, bad...)
		if _, err := runPack(t, a...); err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(bad[0], "--")) {
			t.Errorf("%v: %v", bad, err)
		}
	}
}
