package pack

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
)

// -update rewrites the golden files from what the code writes now (restic's
// convention); review the diff before committing it.
var update = flag.Bool("update", false, "rewrite testdata/golden from the current packer")

// manifestGoldens are packs whose bytes do not depend on floating-point
// details of the machine: an mlx checkpoint is copied bit-exact, bf16 is
// kept, and the mlx rule is required bit-identical to mlx's own conversion
// (TestFixtureMLX4Bit in package quant).
var manifestGoldens = []struct {
	file, src string
	o         Options
}{
	{"mlx-4bit.json", "mlx-4bit", Options{}},
	{"hf-bf16.json", "hf", Options{Bits: 16}},
	{"hf-4bit-mlx-rule.json", "hf", Options{Bits: 4, Rule: "mlx"}},
}

// TestPackedManifestGolden pins the packed format of the tiny checkpoints:
// the manifest carries every field, offset, size and the CRC-32C of every
// tensor and expert block, so any change to what fmoe-pack writes shows here
// and must be made on purpose (with a format version bump if old packs no
// longer read the same).
func TestPackedManifestGolden(t *testing.T) {
	for _, g := range manifestGoldens {
		t.Run(g.file, func(t *testing.T) {
			p := convert(t, tiny+g.src, g.o)
			got, err := os.ReadFile(filepath.Join(p.dir, format.ManifestName))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "golden", g.file)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./pack -run TestPackedManifestGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("packing %s wrote a manifest that differs from %s at %s\n"+
					"if the change is intended, rerun with -update and review the diff", g.src, path, firstDiff(got, want))
			}
		})
	}
}

// firstDiff names the first differing line, so that a failure says what changed.
func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d: got %q, want %q", i+1, gl, wl)
		}
	}
	return "no line (the files differ only in their line endings)"
}
