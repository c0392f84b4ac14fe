package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
