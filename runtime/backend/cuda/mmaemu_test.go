//go:build linux

package cuda

import (
	"encoding/binary"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
)

// TestMMAKernelEmulated runs shaders/mma_cuda.h on the CPU, on machines
// without a GPU: testdata/mmaemu builds it with g++ against a host shim
// whose threads meet at barriers for __syncthreads, shuffles and an
// emulated mma.sync (PTX's m16n8k16 bf16 fragment layout), launches it
// with the backend's own plan (mmaPlan, for an H200's 132 SMs or fewer)
// and checks every token row against float64 at the conformance suite's
// MatMul tolerance (2e-5): Q2, Q4, Q8 and BF16, split and whole K, row and
// token tails, x with a large common offset. It checks the kernel's
// indexing, staging and group arithmetic; that the hardware's fragment
// layout is the one emulated is left to the GPU tests
// (TestMatMulTensorCores).
func TestMMAKernelEmulated(t *testing.T) {
	bin := buildEmulator(t, "mmaemu")
	for i, c := range []struct {
		f          backend.Format
		R, C, G, T int
		offset     bool
		sms        int
	}{
		{backend.Q4, 256, 512, 64, 20, false, 132},  // split-K: an expert's few tokens
		{backend.Q4, 200, 256, 64, 70, true, 132},   // row and token tails, offset x
		{backend.Q8, 130, 256, 128, 33, false, 132}, // group 128
		{backend.Q2, 128, 192, 32, 5, true, 132},    // group 32, few tokens
		{backend.BF16, 140, 96, 0, 65, false, 132},
		{backend.Q4, 256, 256, 64, 130, true, 2}, // whole K (tiles ≥ SMs), three token tiles
	} {
		if !mmaFits(c.f, c.C, c.G) {
			t.Fatalf("case %d: mmaFits(%v, %d, %d) is false", i, c.f, c.C, c.G)
		}
		_, _, splits, kLen := mmaPlan(c.T, c.R, c.C, mmaUnit(c.f, c.G), c.sms)
		off := 0
		if c.offset {
			off = 1
		}
		args := strings.Fields(fmt.Sprint(c.f.Bits(), c.R, c.C, c.G, c.T, off, kLen, splits, i+1))
		out, err := exec.Command(bin, args...).CombinedOutput()
		t.Logf("%v: %s", c.f, strings.TrimSpace(string(out)))
		if err != nil || !strings.HasPrefix(string(out), "ok") {
			t.Errorf("emulated tensor-core kernel, %v %dx%d g%d T=%d: %v", c.f, c.R, c.C, c.G, c.T, err)
		}
	}
}

// TestMMAGroupedEmulated runs MatMulBatch's grouped kernel on the CPU:
// jobs of different token counts (one row, a tile's tail, several tiles)
// in one launch, K split as the host splits it (mmaGroupedSplit, with the
// split width lowered so that these small weights split), each job within
// float64's tolerance and bit for bit what it computes in a launch of its
// own, what the plain kernel and mma_reduce compute with that split, and
// what the skinny tile's grouped kernel (mms_body) computes.
func TestMMAGroupedEmulated(t *testing.T) {
	bin := buildEmulator(t, "mmaemu")
	for _, c := range []struct {
		f       backend.Format
		R, C, G int
		cols    int // the split width in place of mmaGroupedCols
		Ts      []int
	}{
		// Row tail; the largest job sets the grid, the others' blocks past
		// their rows return; three splits. The formats' decoding is
		// TestMMAKernelEmulated's.
		{backend.Q4, 200, 192, 64, 64, []int{5, 70, 1, 17}},
		{backend.BF16, 96, 96, 0, 1024, []int{1, 64}}, // one split
		// The skinny tile's ring of K steps in flight (mms_depth): two
		// unequal splits of 16 and 8 steps of 64 columns (Q4, three in
		// flight); a group over two steps (Q8 g128, two in flight); two
		// groups a step and a last half step (Q2 g32, 352 columns).
		{backend.Q4, 128, 1536, 64, 1024, []int{10, 3}},
		{backend.Q8, 130, 512, 128, 1024, []int{3, 40}},
		{backend.Q2, 128, 352, 32, 1024, []int{16, 33}},
	} {
		if !mmaFits(c.f, c.C, c.G) {
			t.Fatalf("%v: mmaFits(%d, %d) is false", c.f, c.C, c.G)
		}
		splits, kLen := mmaGroupedSplit(c.C, mmaUnit(c.f, c.G), c.cols)
		args := strings.Fields(fmt.Sprint("grouped ", c.f.Bits(), c.R, c.C, c.G, 7, kLen, splits, c.Ts))
		for i, a := range args {
			args[i] = strings.Trim(a, "[]")
		}
		out, err := exec.Command(bin, args...).CombinedOutput()
		t.Logf("%v: %s", c.f, strings.TrimSpace(string(out)))
		if err != nil || strings.Contains(string(out), "FAIL") || !strings.HasPrefix(string(out), "ok") {
			t.Errorf("emulated grouped kernel, %v %dx%d g%d jobs %v: %v", c.f, c.R, c.C, c.G, c.Ts, err)
		}
	}
}

// TestMMAJobLayout: the host's job table (appendMMAJob) puts each field
// where the C++ struct mma_job has it.
func TestMMAJobLayout(t *testing.T) {
	bin := buildEmulator(t, "mmaemu")
	out, err := exec.Command(bin, "layout").CombinedOutput()
	if err != nil {
		t.Fatalf("mmaemu layout: %v: %s", err, out)
	}
	tab := appendMMAJob(nil, 1, 2, 3, 4, 5, 6, 7)
	want := fmt.Sprint(len(tab))
	for v := uint64(1); v <= 7; v++ {
		want += fmt.Sprint(" ", 8*(v-1))
		if got := binary.LittleEndian.Uint64(tab[8*(v-1):]); got != v {
			t.Fatalf("field %d holds %d", v, got)
		}
	}
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("mma_job: size and offsets %q in C++, %q in the host's table", got, want)
	}
}

// TestMMAGroupedSplit: MatMulBatch's K split covers K once in whole units,
// splits an expert's 4096-wide gate four ways and leaves a 1024-wide down
// projection whole.
func TestMMAGroupedSplit(t *testing.T) {
	for _, c := range []struct{ C, unit, splits int }{
		{4096, 64, 4}, {1024, 64, 1}, {7168, 64, 7}, {2048, 128, 2}, {96, 32, 1}, {3072, 96, 3},
	} {
		splits, kLen := mmaGroupedSplit(c.C, c.unit, mmaGroupedCols)
		switch {
		case splits != c.splits:
			t.Errorf("C=%d unit %d: %d splits, want %d", c.C, c.unit, splits, c.splits)
		case kLen%c.unit != 0 && splits > 1, (splits-1)*kLen >= c.C || splits*kLen < c.C:
			t.Errorf("C=%d unit %d: %d splits of %d do not cover K once in whole units", c.C, c.unit, splits, kLen)
		}
	}
}

// TestMMAPlan: a K split covers K exactly once in whole units, leaves no
// split empty, gives at least half as many blocks as SMs when K allows
// (rounding kLen up to whole units costs some: 128 blocks for 132 SMs on
// an expert's gate), and is one split where the output tiles fill the SMs.
func TestMMAPlan(t *testing.T) {
	for _, c := range []struct{ T, R, C, unit, sms int }{
		{20, 1024, 4096, 64, 132}, {20, 4096, 1024, 64, 132}, {1024, 1024, 4096, 64, 132},
		{1, 64, 128, 64, 132}, {300, 384, 512, 128, 132}, {5, 128, 192, 32, 132}, {100, 8192, 4096, 32, 132},
	} {
		nt, mt, splits, kLen := mmaPlan(c.T, c.R, c.C, c.unit, c.sms)
		name := fmt.Sprintf("T%d %dx%d unit %d: %d×%d tiles, %d splits of %d", c.T, c.R, c.C, c.unit, nt, mt, splits, kLen)
		switch {
		case kLen%c.unit != 0 || kLen <= 0:
			t.Errorf("%s: split not whole units", name)
		case (splits-1)*kLen >= c.C || splits*kLen < c.C:
			t.Errorf("%s: splits do not cover K once", name)
		case nt*mt >= c.sms && splits != 1:
			t.Errorf("%s: split although the tiles fill the SMs", name)
		case 2*nt*mt*splits < c.sms && kLen != c.unit:
			t.Errorf("%s: fewer blocks than SMs though K could split further", name)
		}
	}
}

// buildEmulator compiles testdata/NAME/NAME.cc (a kernel header run on the
// CPU through testdata/mmaemu/shim.h) with g++ and returns the binary, or
// skips where there is no g++ with C++20's <barrier>.
func buildEmulator(t *testing.T, name string, flags ...string) string {
	t.Helper()
	gxx, err := exec.LookPath("g++")
	if err != nil {
		t.Skip("no g++")
	}
	bin := filepath.Join(t.TempDir(), name)
	args := append([]string{"-std=c++20", "-O1", "-pthread", "-I", "../../../shaders", "-o", bin}, flags...)
	out, err := exec.Command(gxx, append(args, filepath.Join("testdata", name, name+".cc"))...).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "barrier: No such file") {
			t.Skipf("g++ without C++20 <barrier>: %s", out)
		}
		t.Fatalf("g++: %v\n%s", err, out)
	}
	return bin
}
