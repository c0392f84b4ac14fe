//go:build linux

package cuda

import (
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// TestRouteKernelsEmulated runs shaders/route_cuda.h on the CPU, on
// machines without a GPU: testdata/routeemu builds route_topk and
// experts_jobs with g++ against a host shim (256 threads a block, meeting
// at barriers for __syncthreads, __syncthreads_or and the shuffles).
// route_topk must pass the conformance suite's RouteTopK cases (ties, −Inf,
// NaN, K = 1, K = E, widths not multiples of 32); experts_jobs must build
// the jobs of held experts, null jobs, zeroed rows and status 2 for
// misses, and with a shared expert its jobs at K, the tables' stride K+1. The device's double exp may round differently from glibc's; the
// 2-ulp float32 tolerance covers that, and TestConformance/RouteTopK
// checks the real kernel on a GPU.
func TestRouteKernelsEmulated(t *testing.T) {
	bin := buildEmulator(t, "routeemu")
	if out, err := exec.Command(bin, "jobs").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "ok") {
		t.Errorf("experts_jobs: %v: %s", err, out)
	}
	for _, c := range backendtest.RouteCases() {
		for _, renorm := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/renorm=%v", c.Name, renorm), func(t *testing.T) {
				ids, w, status := runRouteEmu(t, bin, c, renorm)
				backendtest.CheckRoute(t, c, renorm, ids, w, status)
			})
		}
	}
}

// runRouteEmu runs route_topk on c in the emulator.
func runRouteEmu(t *testing.T, bin string, c backendtest.RouteCase, renorm bool) (ids, w []float32, status float32) {
	t.Helper()
	var in strings.Builder
	fmt.Fprintf(&in, "%d %d %d %d\n", c.T, c.E, c.K, map[bool]int{false: 0, true: 1}[renorm])
	for _, v := range c.Logits {
		fmt.Fprintf(&in, "%08x ", math.Float32bits(v))
	}
	cmd := exec.Command(bin, "route")
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("routeemu: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2*c.T*c.K+1 {
		t.Fatalf("routeemu printed %d values, want %d", len(f), 2*c.T*c.K+1)
	}
	v := make([]float32, len(f))
	for i, s := range f {
		u, err := strconv.ParseUint(s, 16, 32)
		if err != nil {
			t.Fatalf("routeemu output %q: %v", s, err)
		}
		v[i] = math.Float32frombits(uint32(u))
	}
	n := c.T * c.K
	return v[:n], v[n : 2*n], v[2*n]
}
