package model

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/pack"
)

// TestLZ4Copy: the experts read from the LZ4 copy give bit-identical
// logits to the raw files, for the pack's own set and the 2-bit one; a
// missing copy, one of another set, and direct I/O are refused at Open.
func TestLZ4Copy(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "m")
	copyDir(t, packed(t, "mlx-4bit", 0), dir)
	if _, err := pack.Requant(ctx, pack.RequantOptions{Model: dir, Bits: 2, Rule: "minmax"}); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, Options{LZ4: true})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "packed_experts_lz4")) || !strings.Contains(err.Error(), "fmoe-pack lz4 --model") {
		t.Fatalf("without the copy: %v", err)
	}
	if _, err := pack.LZ4(ctx, pack.LZ4Options{Model: dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{LZ4: true, DirectIO: true}); err == nil || !strings.Contains(err.Error(), "direct I/O") {
		t.Fatalf("LZ4 with direct I/O: %v", err)
	}
	// The 2-bit set has its own copy, and the 4-bit one is not taken for it.
	_, err = Open(dir, Options{LZ4: true, ExpertBits: 2})
	if err == nil || !strings.Contains(err.Error(), "packed_experts_2bit_lz4") || !strings.Contains(err.Error(), "--bits 2") {
		t.Fatalf("2-bit without its copy: %v", err)
	}
	if _, err := pack.LZ4(ctx, pack.LZ4Options{Model: dir, Bits: 2}); err != nil {
		t.Fatal(err)
	}
	for _, bits := range []int{0, 2} {
		var logits [2][]float32
		var gen [2][]int
		for i, lz := range []bool{false, true} {
			m, err := Open(dir, Options{LZ4: lz, ExpertBits: bits})
			if err != nil {
				t.Fatal(err)
			}
			if lz != (m.experts.lz4 != nil) {
				t.Fatal("LZ4 option not passed to the expert reader")
			}
			logits[i] = forwardAll(t, m, timingPrompt)
			s, _ := m.NewSession()
			if gen[i], err = s.Generate(timingPrompt, 8, nil, nil, nil); err != nil {
				t.Fatal(err)
			}
			m.Close()
		}
		for j := range logits[0] {
			if logits[0][j] != logits[1][j] {
				t.Fatalf("bits %d logit %d: raw %v, LZ4 %v", bits, j, logits[0][j], logits[1][j])
			}
		}
		if !slices.Equal(gen[0], gen[1]) {
			t.Fatalf("bits %d: raw generates %v, LZ4 %v", bits, gen[0], gen[1])
		}
	}
	// A copy made from other weights is refused, naming the fix.
	two := filepath.Join(dir, "packed_experts_2bit_lz4")
	os.RemoveAll(two)
	copyDir(t, filepath.Join(dir, "packed_experts_lz4"), two)
	if _, err := Open(dir, Options{LZ4: true, ExpertBits: 2}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("a 4-bit copy for the 2-bit set: %v", err)
	}
}
