package verify

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fmoe/fmoe/pack"
)

// A requantised set verifies, is compared with the 4-bit set it came from within the 2-bit
// bound, and damage in it is located to the set, layer, expert and projection.
func TestRequantisedSetVerifies(t *testing.T) {
	dir, _ := copyPack(t, "mlx-4bit")
	if _, err := pack.Requant(context.Background(), pack.RequantOptions{Model: dir, Bits: 2}); err != nil {
		t.Fatal(err)
	}
	r := run(t, Options{Model: dir, Source: tiny + "mlx-4bit"})
	if !r.OK {
		t.Fatalf("%v", r.Problems)
	}
	derived := 0
	for _, k := range r.Source.Kinds {
		if k.Against == "packed_experts (4-bit)" {
			derived++
			if k.Mode != "bound" || k.Count != 128 || k.MaxRatio > 1 || k.MaxRatio == 0 {
				t.Errorf("%+v", k)
			}
		}
	}
	if derived != 3 {
		t.Fatalf("%d requantised projection kinds compared, want 3", derived)
	}
	m := r.Manifest
	if len(m.ExpertSets) != 2 || m.ExpertSets[1].Dir != "packed_experts_2bit" {
		t.Fatalf("sets %+v", m.ExpertSets)
	}
	mf, _ := copyManifest(t, dir)
	set := &mf.Experts[1]
	up, _ := set.Projection("up_proj")
	l, e := 6, 2
	off := int64(e)*set.Stride + up.Scales.Offset + 3
	path := filepath.Join(dir, set.Dir, set.Layers[l].File)
	flip(t, path, off)
	r = run(t, Options{Model: dir})
	wantProblem(t, r, "checksum", Problem{Set: set.Dir, Layer: &l, Expert: &e, Projection: "up_proj", Part: "scales", Offset: &off})
}
