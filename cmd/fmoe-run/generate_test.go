package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/fmoe/fmoe/pack"
)

// TestGenerateLZ4: --lz4 names the missing copy and how to make it, and
// once made generates exactly what the raw experts do.
func TestGenerateLZ4(t *testing.T) {
	args := []string{"generate", "--model", "$MODEL", "--ids", "1,5,9,13", "--tokens", "6", "--backend", "cpu"}
	want, err := runApp(t, "", args...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runApp(t, "", append(args, "--lz4", "--direct-io")...); err == nil || !strings.Contains(err.Error(), "--direct-io") {
		t.Fatalf("--lz4 --direct-io: %v", err)
	}
	dir, _ := tinyPack()
	// The pack lives as long as the test binary: -count=2 finds the copy.
	if _, err := os.Stat(filepath.Join(dir, "packed_experts_lz4")); err != nil {
		if _, err := runApp(t, "", append(args, "--lz4")...); err == nil || !strings.Contains(err.Error(), "fmoe-pack lz4 --model") {
			t.Fatalf("--lz4 without the copy: %v", err)
		}
		if _, err := pack.LZ4(context.Background(), pack.LZ4Options{Model: dir}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := runApp(t, "", append(args, "--lz4")...)
	if err != nil {
		t.Fatal(err)
	}
	if got != want || len(strings.Fields(got)) != 6 {
		t.Errorf("--lz4 generates %q, the raw experts %q", got, want)
	}
}

// TestGenerateReply: a chat reply reads as the chat shows it (no blank line,
// no </think>, no tool-call markup); --raw keeps the markup.
func TestGenerateReply(t *testing.T) {
	args := []string{"generate", "--model", "$MODEL", "--prompt", "What's the weather in Paris?",
		"--tools", "../../models/fmoe-tiny-chat/tools.json", "--tokens", "64", "--backend", "cpu"}
	got, err := runApp(t, "", args...)
	if err != nil {
		t.Fatal(err)
	}
	if want := "tool call: get_weather({\"city\":\"Paris\"})\n"; got != want {
		t.Errorf("reply %q, want %q", got, want)
	}
	raw, err := runApp(t, "", append(args, "--raw")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"</think>", "<tool_call>\n<function=get_weather>"} {
		if !strings.Contains(raw, want) {
			t.Errorf("--raw output %q lacks %q", raw, want)
		}
	}
	got, err = runApp(t, "", "generate", "--model", "$MODEL", "--prompt", "Count from 1 to 5", "--tokens", "64", "--backend", "cpu")
	if err != nil {
		t.Fatal(err)
	}
	if want := "1, 2, 3, 4, 5.\n"; got != want {
		t.Errorf("reply %q, want %q", got, want)
	}
}

func TestShortBackendLine(t *testing.T) {
	for in, want := range map[string]string{
		"backend: cpu (cuda: no CUDA driver (libcuda.so.1): libcuda.so.1: cannot open shared object file: No such file or directory)": "backend: cpu (no CUDA driver)",
		"backend: cpu (metal: Metal backend needs macOS on Apple Silicon (darwin/arm64, built with cgo))":                             "backend: cpu (Metal backend needs macOS on Apple Silicon)",
		"backend: cuda": "backend: cuda",
	} {
		if got := shortBackendLine(in); got != want {
			t.Errorf("shortBackendLine(%q) = %q, want %q", in, got, want)
		}
	}
	var b strings.Builder
	writeBackendLog(&b, "backend: cpu (cuda: no CUDA driver (libcuda.so.1): gone)\n", true)
	if b.String() != "backend: cpu (cuda: no CUDA driver (libcuda.so.1): gone)\n" {
		t.Errorf("--verbose shortened the line: %q", b.String())
	}
}

// TestMedianMs: the summary line's median step is the middle step, which
// one slow step does not move (the peer benchmark's per-layer split reads it).
func TestMedianMs(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		steps []time.Duration
		want  float64
	}{
		{nil, 0},
		{[]time.Duration{ms}, 1},
		{[]time.Duration{3 * ms, ms, 2 * ms}, 2},
		{[]time.Duration{ms / 2, ms / 2, 40 * ms, ms / 2}, 0.5},
	} {
		if got := medianMs(c.steps); got != c.want {
			t.Errorf("medianMs(%v) = %v, want %v", c.steps, got, c.want)
		}
	}
}

// TestPercentileMs: nearest rank, so a percentile is always one of the
// steps; out-of-range ranks clamp to the first and last.
func TestPercentileMs(t *testing.T) {
	const ms = time.Millisecond
	ten := []time.Duration{7 * ms, 2 * ms, 9 * ms, 1 * ms, 10 * ms, 3 * ms, 5 * ms, 4 * ms, 8 * ms, 6 * ms}
	for _, c := range []struct {
		steps []time.Duration
		p     float64
		want  float64
	}{
		{nil, 90, 0},
		{ten, 10, 1},
		{ten, 90, 9},
		{ten, 91, 10},
		{ten, 0, 1},
		{ten, 100, 10},
		{[]time.Duration{ms / 2}, 90, 0.5},
	} {
		if got := percentileMs(c.steps, c.p); got != c.want {
			t.Errorf("percentileMs(%v, %v) = %v, want %v", c.steps, c.p, got, c.want)
		}
	}
	if ten[0] != 7*ms {
		t.Error("percentileMs sorted the caller's steps")
	}
}

// TestGenerateClosesBackends: the backends openModel opened end with the
// command. The model leaves them to their opener, and a run that kept
// them never wrote FMOE_CUDA_TRACE's timeline (CUDA writes it on Close).
// The CPU backend's workers are what shows it here; with the collector
// off, nothing but Close stops them.
func TestGenerateClosesBackends(t *testing.T) {
	if _, err := tinyPack(); err != nil {
		t.Fatal(err)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	before := runtime.NumGoroutine()
	if _, err := runApp(t, "", "generate", "--model", "$MODEL", "--ids", "1,2,3", "--tokens", "2", "--backend", "cpu", "--threads", "8"); err != nil {
		t.Fatal(err)
	}
	n := 0
	for range 200 {
		if n = runtime.NumGoroutine(); n <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines after generate, %d before: the backend's 7 workers were left running", n, before)
}
