package main

import (
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/model"
)

func TestParseCacheSize(t *testing.T) {
	for in, want := range map[string]int64{
		"auto": model.GPUCacheAuto, "0": model.GPUCacheOff, "0G": model.GPUCacheOff,
		"1024": 1024, "512M": 512 << 20, "40G": 40 << 30, "40GiB": 40 << 30, "1.5g": 3 << 29, "2T": 2 << 40,
	} {
		if got, err := parseCacheSize(in); err != nil || got != want {
			t.Errorf("parseCacheSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1G", "lots", "G", "1e400", "12Q"} {
		if _, err := parseCacheSize(in); err == nil {
			t.Errorf("parseCacheSize(%q) succeeded", in)
		}
	}
}

// TestGPUCacheRefused: a GPU tier asked of a backend that has none is an
// error naming the backend; a malformed size is a usage error.
func TestGPUCacheRefused(t *testing.T) {
	args := []string{"generate", "--model", "$MODEL", "--ids", "1,5", "--tokens", "2", "--backend", "cpu"}
	if _, err := runApp(t, "", append(args, "--gpu-cache", "1G")...); err == nil || !strings.Contains(err.Error(), "keeps none") {
		t.Fatalf("--gpu-cache 1G on the CPU: %v", err)
	}
	if _, err := runApp(t, "", append(args, "--gpu-cache", "lots")...); err == nil || !strings.Contains(err.Error(), "not a size") {
		t.Fatalf("--gpu-cache lots: %v", err)
	}
	if _, err := runApp(t, "", append(args, "--gpu-cache", "0")...); err != nil {
		t.Fatalf("--gpu-cache 0 on the CPU: %v", err)
	}
}

// TestHostCacheFlag: a host tier runs on any backend and generates what
// the page cache does; one larger than the machine's memory is refused
// naming what is available; a malformed size is a usage error.
func TestHostCacheFlag(t *testing.T) {
	args := []string{"generate", "--model", "$MODEL", "--ids", "1,5,9,13", "--tokens", "6", "--backend", "cpu"}
	want, err := runApp(t, "", args...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := runApp(t, "", append(args, "--host-cache", "1M")...)
	if err != nil || got != want {
		t.Fatalf("--host-cache 1M: %q, %v; without: %q", got, err, want)
	}
	if _, err := runApp(t, "", append(args, "--host-cache", "1000T")...); err == nil || !strings.Contains(err.Error(), "available") {
		t.Fatalf("--host-cache 1000T: %v", err)
	}
	for _, bad := range []string{"auto", "lots"} {
		if _, err := runApp(t, "", append(args, "--host-cache", bad)...); err == nil || !strings.Contains(err.Error(), "--host-cache") {
			t.Fatalf("--host-cache %s: %v", bad, err)
		}
	}
}

// TestPrefetchRefused: --prefetch needs a GPU tier that prefetches and a
// host tier; without them it is refused with the reason, not ignored.
func TestPrefetchRefused(t *testing.T) {
	checkRefused(t, []refusal{
		{[]string{"--prefetch", "1"}, "needs a GPU tier"},
		{[]string{"--prefetch", "1", "--host-cache", "1M"}, "needs a GPU tier"},
		{[]string{"--prefetch", "-1"}, "want 0, off, or more"},
	}, "--prefetch", "0")
}

// TestCPUExpertsRefused: --cpu-experts out of range, without a host tier,
// or on a backend without a GPU tier is a usage error saying which.
func TestCPUExpertsRefused(t *testing.T) {
	checkRefused(t, []refusal{
		{[]string{"--cpu-experts", "1.5"}, "at most 1"},
		{[]string{"--cpu-experts", "-0.2"}, "above 0"},
		{[]string{"--cpu-experts", "NaN"}, "above 0"},
		{[]string{"--cpu-experts", "half"}, "or auto"},
		{[]string{"--cpu-experts", "auto"}, "needs --host-cache"},
		{[]string{"--cpu-experts", "0.5"}, "needs --host-cache"},
		{[]string{"--cpu-experts", "0.5", "--host-cache", "1M"}, "has no GPU tier"},
	}, "--cpu-experts", "0")
}

// A refusal is flags that generate on the CPU refuses, and what its error says.
type refusal struct {
	flags []string
	want  string
}

// checkRefused runs generate on the CPU with each refusal's flags and
// wants its error, then with off (the flag's off value), which must run.
func checkRefused(t *testing.T, cases []refusal, off ...string) {
	t.Helper()
	args := func(extra []string) []string {
		return append([]string{"generate", "--model", "$MODEL", "--ids", "1,5", "--tokens", "2", "--backend", "cpu"}, extra...)
	}
	for _, c := range cases {
		if _, err := runApp(t, "", args(c.flags)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v; want an error saying %q", c.flags, err, c.want)
		}
	}
	if _, err := runApp(t, "", args(off)...); err != nil {
		t.Errorf("%v: %v", off, err)
	}
}
