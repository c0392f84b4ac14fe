//go:build linux

package cuda

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMMAKernelEmulated runs shaders/mma_cuda.h on the CPU, on machines
// without a GPU: testdata/mmaemu builds it with g++ against a host shim
// whose threads meet at barriers for __syncthreads, shuffles and an
// emulated mma.sync (PTX's m16n8k16 bf16 fragment layout), launches it
// with the host's split-K plan and checks every token row against float64
// at the conformance suite's MatMul tolerance (2e-5): Q2, Q4, Q8 and BF16,
// split and whole K, row and token tails, x with a large common offset.
// It checks the kernel's indexing, staging and group arithmetic; that the
// hardware's fragment layout is the one emulated is left to the GPU tests
// (TestMatMulTensorCores).
func TestMMAKernelEmulated(t *testing.T) {
	gxx, err := exec.LookPath("g++")
	if err != nil {
		t.Skip("no g++")
	}
	bin := filepath.Join(t.TempDir(), "mmaemu")
	out, err := exec.Command(gxx, "-std=c++20", "-O1", "-pthread", "-I", "../../../shaders", "-o", bin,
		"testdata/mmaemu/mmaemu.cc").CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "barrier: No such file") {
			t.Skipf("g++ without C++20 <barrier>: %s", out)
		}
		t.Fatalf("g++: %v\n%s", err, out)
	}
	out, err = exec.Command(bin).CombinedOutput()
	t.Logf("%s", out)
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "PASS") {
		t.Fatalf("emulated tensor-core kernel: %v", err)
	}
}
