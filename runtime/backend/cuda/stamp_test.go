//go:build linux && cgo

package cuda

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// TestStamps: three stamps around twenty queued matmuls of 8 MB and
// around nothing come back as three times from the first (0), the work's
// interval longer than the empty one; the stamps are then spent (a second
// call returns none), and a new set starts from 0 again.
func TestStamps(t *testing.T) {
	be := newOrSkip(t)
	defer be.Close()
	rng := rand.New(rand.NewPCG(5, 9))
	w, _ := backendtest.RandomWeight(rng, backend.Q4, 4096, 4096, 64)
	wt, err := be.Register(w)
	if err != nil {
		t.Fatal(err)
	}
	x, err := be.Alloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	y, err := be.Alloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Write(x, make([]float32, 4096)); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		if err := be.Stamp(); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			if err := be.MatMul(y, wt, x, 1); err != nil {
				t.Fatal(err)
			}
		}
		if err := be.Stamp(); err != nil {
			t.Fatal(err)
		}
		if err := be.Stamp(); err != nil {
			t.Fatal(err)
		}
		d, err := be.Stamps(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(d) != 3 || d[0] != 0 || d[1] <= 0 || d[2] < d[1] || d[2]-d[1] >= d[1] {
			t.Fatalf("round %d: stamps %v: want 0, the work's time, and about as much again", round, d)
		}
		if d[1] > time.Second {
			t.Fatalf("round %d: 20 matmuls of 8 MB took %v", round, d[1])
		}
		if again, err := be.Stamps(nil); err != nil || len(again) != 0 {
			t.Fatalf("round %d: spent stamps read again: %v, %v", round, again, err)
		}
	}
}
