//go:build linux && cgo

package cuda

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// TestTimeline: with FMOE_CUDA_TRACE set, Close writes one line a mark:
// the matmuls' kernels and the read-backs on the compute stream, in the
// order queued, at device times that do not go back, a host-only mark for
// each input written and for a caller's MarkHost, and the results are the
// untraced ones.
func TestTimeline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.tsv")
	t.Setenv("FMOE_CUDA_TRACE", path)
	be := newOrSkip(t)
	rng := rand.New(rand.NewPCG(3, 7))
	w, _ := backendtest.RandomWeight(rng, backend.Q4, 300, 4096, 64)
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	got := runMatMul(t, be, w, x, 1, 300)
	const n = 3
	for i := 0; i < n; i++ {
		if relErr(runMatMul(t, be, w, x, 1, 300), got) != 0 {
			t.Fatal("a traced matmul differs from the first")
		}
	}
	be.MarkHost("probe", 7)
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if lines[0] != "dev_us\thost_us\tstream\tlabel\targ" {
		t.Fatalf("header %q", lines[0])
	}
	reads, kernels, writes, probes, last := 0, 0, 0, 0, -1.0
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if len(f) != 5 {
			t.Fatalf("line %q: want 5 fields", l)
		}
		dev, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		switch {
		case f[2] == "h" && f[3] == "write":
			writes++
		case f[2] == "h" && f[3] == "probe" && f[4] == "7":
			probes++
		case f[2] == "c" && f[3] == "read":
			reads++
		case f[2] == "c":
			kernels++
		}
		if f[2] == "c" {
			if dev < last {
				t.Errorf("line %q: the compute stream's time went back from %.1f", l, last)
			}
			last = dev
		}
	}
	if probes != 1 {
		t.Errorf("%d lines of MarkHost(\"probe\", 7), want 1", probes)
	}
	if reads < n+1 || kernels < n+1 || writes < n+1 {
		t.Fatalf("%d reads, %d kernel marks and %d writes, want at least %d each:\n%s", reads, kernels, writes, n+1, b)
	}
}
