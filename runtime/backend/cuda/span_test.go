//go:build linux && cgo

package cuda

import (
	"math/rand/v2"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// placeExpert lays ws out in buf from offset 0, each weight's data, scales
// and biases at its device offsets and each weight gap bytes past the one
// before's device extent, and returns the weights over buf.
func placeExpert(buf []byte, ws []backend.Weight, gap int) []backend.Weight {
	out := make([]backend.Weight, len(ws))
	off := 0
	for i, w := range ws {
		so, bo, size := layout(w)
		copy(buf[off:], w.Data)
		copy(buf[off+so:], w.Scales)
		copy(buf[off+bo:], w.Biases)
		out[i] = w
		out[i].Data = buf[off : off+len(w.Data)]
		out[i].Scales = buf[off+so : off+so+len(w.Scales)]
		out[i].Biases = buf[off+bo : off+bo+len(w.Biases)]
		off += size + gap
	}
	return out
}

// TestExpertSpanOneCopy: an expert whose projections lie in pinned memory
// as a pack lays them out is cached in one slot by one copy; laid out
// otherwise (a gap that breaks the 256-byte offsets, or pageable memory) it
// takes a slot a projection. Either way every projection computes what
// the CPU does, on the miss and on the hit, and after its slot is reused.
func TestExpertSpanOneCopy(t *testing.T) {
	be := newOrSkip(t)
	defer be.Close()
	ref := cpu.New(cpu.Options{})
	const R, C = 96, 512
	rng := rand.New(rand.NewPCG(9, 2))
	var ws [3][]backend.Weight
	for e := range ws {
		for j := 0; j < 3; j++ {
			w, _ := backendtest.RandomWeight(rng, backend.Q4, R, C, 64)
			ws[e] = append(ws[e], w)
		}
	}
	_, _, one := layout(ws[0][0])
	pinned, err := be.HostAlloc(3 * 4 * one)
	if err != nil {
		t.Fatal(err)
	}
	defer be.HostFree(pinned)
	packed := placeExpert(pinned, ws[0], 0)                // one copy
	gapped := placeExpert(pinned[4*one:], ws[1], 16)       // a slot a projection
	pageable := placeExpert(make([]byte, 4*one), ws[2], 0) // not pinned
	x, xb := lruWithInput(t, be, int64(2*3*one+256), C, rng)
	check := func(id int, w []backend.Weight, slots int) {
		t.Helper()
		ts, err := be.BindExpert(0, id, w)
		if err != nil {
			t.Fatal(err)
		}
		if e := be.cache.m[ExpertKey{0, id}]; e == nil || len(e.slots) != slots {
			t.Fatalf("expert %d: entry %v, want one with %d slots", id, e, slots)
		}
		for j, wt := range ts {
			y := tensorMatVec(t, be, wt, xb, R)
			if err := relErr(y, runMatMul(t, ref, w[j], x, 1, R)); !(err < 2e-5) {
				t.Fatalf("expert %d projection %d: relative error %.3g", id, j, err)
			}
			if err := be.Release(wt); err != nil {
				t.Fatal(err)
			}
		}
	}
	check(0, packed, 1)
	check(0, packed, 1) // the hit
	check(1, gapped, 3)
	check(2, pageable, 3) // evicts expert 0: its slot is spare
	check(0, packed, 1)   // back in a slot of its own size, the others' freed
	check(0, packed, 1)
}
