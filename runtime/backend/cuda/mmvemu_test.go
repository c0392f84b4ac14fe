//go:build linux

package cuda

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestMMVKernelEmulated runs shaders/mmv_cuda.h on the CPU, on machines
// without a GPU: testdata/mmvemu builds it with g++ against mmaemu's shim
// (threads meeting at barriers, an emulated integer mma.sync) and
// checks y against float64 at the conformance suite's MatMul tolerance
// (2e-5): Q2, Q4 and Q8, groups of 64 and 128, few chunks a warp and many,
// row tails, one to sixteen warps a tile, x with a large common offset, x
// over eleven decades. That the hardware's fragment layout is the one
// emulated is left to the GPU test (TestMatMulMMV).
func TestMMVKernelEmulated(t *testing.T) {
	bin := buildEmulator(t, "mmvemu")
	for _, c := range [][6]int{
		// bits, R, C, G, warps a tile, offset (1: a common offset, 2: eleven decades)
		{4, 40, 512, 64, 2, 0},
		{4, 200, 1024, 64, 3, 1}, // a row tail, warps with two chunks and with three
		{2, 33, 512, 64, 1, 1},
		{8, 50, 1024, 128, 2, 0},
		{4, 64, 1024, 128, 5, 1},
		{4, 17, 512, 64, 8, 1},   // four chunks over eight warps: half of them idle
		{2, 16, 1536, 64, 16, 0}, // twelve chunks over sixteen warps
		{4, 100, 4096, 64, 2, 1}, // the 397B's hidden size: eight loads a warp
		{8, 20, 2048, 64, 1, 1},
		// x over eleven decades with a zero block and a block below the
		// kernel's 2^-96 floor
		{4, 40, 512, 64, 2, 2},
		{8, 50, 1024, 128, 2, 2},
		{2, 33, 512, 64, 1, 2},
		{4, 16, 16384, 128, 1, 2}, // 256 blocks of x, 128 chunks a warp
	} {
		args := []string{}
		for _, v := range c {
			args = append(args, fmt.Sprint(v))
		}
		args = append(args, "11")
		out, err := exec.Command(bin, args...).CombinedOutput()
		t.Logf("%s", strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatalf("mmvemu %v: %v", args, err)
		}
	}
}

// TestNormStageEmulated runs norm_stage_body (mmv_cuda.h: a norm and the
// integer matvec's staging of its output in one launch, the fused half of
// backend.NormMatMuler) on the CPU beside the rmsnorm and mmv_stage
// launches it replaces: testdata/normemu checks that y and the staged
// words are the same bits, for heads gated in place (before out_proj) and
// for one weighted vector (before the in-projection), Q2, Q4 and Q8.
func TestNormStageEmulated(t *testing.T) {
	bin := buildEmulator(t, "normemu")
	for _, bits := range []string{"2", "4", "8"} {
		for _, mode := range []string{"0", "1"} {
			out, err := exec.Command(bin, bits, mode).CombinedOutput()
			t.Logf("%s", strings.TrimSpace(string(out)))
			if err != nil {
				t.Fatalf("normemu %s %s: %v", bits, mode, err)
			}
		}
	}
}
