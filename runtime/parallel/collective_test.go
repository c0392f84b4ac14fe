package parallel

import (
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

func cpus(t *testing.T, n int) []backend.Backend {
	bes := make([]backend.Backend, n)
	for i := range bes {
		bes[i] = cpu.New(cpu.Options{Threads: 1})
		t.Cleanup(func() { bes[i].Close() })
	}
	return bes
}

// TestLocalCollective: broadcast copies the root's values to every rank;
// all-reduce leaves the rank-order float32 sum in every rank.
func TestLocalCollective(t *testing.T) {
	bes := cpus(t, 3)
	c, err := NewLocal(bes)
	if err != nil {
		t.Fatal(err)
	}
	vals := [][]float32{{1, 2, 1e8}, {10, 20, 1}, {100, 200, -1e8}}
	bufs := make([]backend.Buffer, 3)
	for r := range bufs {
		bufs[r], _ = bes[r].Alloc(3)
		bes[r].Write(bufs[r], vals[r])
	}
	if err := c.AllReduce(bufs); err != nil {
		t.Fatal(err)
	}
	// (1e8 + 1) rounds to 1e8 in float32 before -1e8 is added: rank order shows.
	want := []float32{111, 222, 0}
	for r, b := range bufs {
		got := make([]float32, 3)
		bes[r].Read(got, b)
		if got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Fatalf("all-reduce: rank %d holds %v, want %v", r, got, want)
		}
	}
	bes[1].Write(bufs[1], []float32{7, 8, 9})
	if err := c.Broadcast(bufs, 1); err != nil {
		t.Fatal(err)
	}
	for r, b := range bufs {
		got := make([]float32, 3)
		bes[r].Read(got, b)
		if got[0] != 7 || got[1] != 8 || got[2] != 9 {
			t.Fatalf("broadcast: rank %d holds %v", r, got)
		}
	}
	short, _ := bes[2].Alloc(2)
	if err := c.AllReduce([]backend.Buffer{bufs[0], bufs[1], short}); err == nil {
		t.Error("buffers of different lengths accepted")
	}
	if err := c.Broadcast(bufs[:2], 0); err == nil {
		t.Error("2 buffers over 3 ranks accepted")
	}
	if err := c.Broadcast(bufs, 3); err == nil {
		t.Error("a root outside the ranks accepted")
	}
}
