package gpu

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/shaders"
)

// TestNormThreads pins the rmsnorm block: a warp multiple within 32..1,024
// threads, one thread a value up to 256 values (the per-head norms), and up
// to 8,192 values at most NORM_UNROLL values a thread, so that a hidden
// vector's norm loads once before its sum and once after.
func TestNormThreads(t *testing.T) {
	for _, dim := range []int{1, 31, 64, 128, 256, 257, 2048, 2049, 4096, 5120, 7168, 8192, 8193, 20000} {
		n := normThreads(dim)
		if n%32 != 0 || n < 32 || n > 1024 {
			t.Errorf("dim %d: %d threads, want a multiple of 32 in [32, 1024]", dim, n)
		}
		if dim <= 256 && n < dim {
			t.Errorf("dim %d: %d threads, want one a value", dim, n)
		}
		if per := (dim + n - 1) / n; dim <= 8192 && per > normUnroll {
			t.Errorf("dim %d: %d threads hold %d values each, want at most %d", dim, n, per, normUnroll)
		}
	}
	if got := normThreads(4096); got != 512 {
		t.Errorf("dim 4096: %d threads, want 512", got)
	}
}

// TestNormUnrollMatchesShader: normUnroll is norm.h's NORM_UNROLL.
func TestNormUnrollMatchesShader(t *testing.T) {
	m := regexp.MustCompile(`#define NORM_UNROLL (\d+)`).FindStringSubmatch(strings.Join(shaders.Bodies(), "\n"))
	if m == nil {
		t.Fatal("norm.h defines no NORM_UNROLL")
	}
	if v, _ := strconv.Atoi(m[1]); v != normUnroll {
		t.Errorf("NORM_UNROLL is %d, normUnroll %d", v, normUnroll)
	}
}
