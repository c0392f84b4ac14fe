//go:build linux && cgo

package cuda

import (
	"errors"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// TestKernelProfile: with FMOE_CUDA_PROFILE set each launch is counted
// under its kernel's name, the count restarts after a report, the results
// are the unprofiled ones, and graphs are refused.
func TestKernelProfile(t *testing.T) {
	t.Setenv("FMOE_CUDA_PROFILE", "1")
	be := newOrSkip(t)
	defer be.Close()
	if err := be.BeginGraph(); !errors.Is(err, errProfiling) {
		t.Fatalf("BeginGraph while profiling: %v, want errProfiling", err)
	}
	rng := rand.New(rand.NewPCG(3, 5))
	w, _ := backendtest.RandomWeight(rng, backend.Q4, 300, 4096, 64)
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	got := runMatMul(t, be, w, x, 1, 300)
	if _, err := be.KernelProfile(); err != nil { // drop the set-up's launches
		t.Fatal(err)
	}
	const n = 3
	for i := 0; i < n; i++ {
		again := runMatMul(t, be, w, x, 1, 300)
		if relErr(again, got) != 0 {
			t.Fatal("a profiled matmul differs from the first")
		}
	}
	tab, err := be.KernelProfile()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", tab)
	if !strings.Contains(tab, "total device time") {
		t.Fatalf("no total line:\n%s", tab)
	}
	// Every launch of the three matmuls is in one row or another, each
	// kernel row a multiple of 3 calls (the matmuls are the same).
	rows := rowRE.FindAllStringSubmatch(tab, -1)
	if len(rows) == 0 {
		t.Fatalf("no kernel rows:\n%s", tab)
	}
	for _, r := range rows {
		if c, _ := strconv.Atoi(r[1]); c%n != 0 {
			t.Errorf("%s: %d calls, not a multiple of %d", r[2], c, n)
		}
	}
	again, err := be.KernelProfile()
	if err != nil {
		t.Fatal(err)
	}
	if len(rowRE.FindAllStringSubmatch(again, -1)) != 0 {
		t.Errorf("the count did not restart:\n%s", again)
	}
}

// rowRE matches a kernel row of KernelProfile's table: calls, name.
var rowRE = regexp.MustCompile(`(?m)^\s*[0-9.]+\s+[0-9.]+%\s+([0-9]+)\s+[0-9.]+\s+(\S+)$`)

// TestBatchPlanEnv: a batch plan the backend does not know is an error at
// New, before any device is opened, not a silent default.
func TestBatchPlanEnv(t *testing.T) {
	t.Setenv("FMOE_CUDA_BATCH_PLAN", "wave")
	be, err := New()
	if err == nil {
		be.Close()
		t.Fatal("FMOE_CUDA_BATCH_PLAN=wave accepted")
	}
	if !strings.Contains(err.Error(), "FMOE_CUDA_BATCH_PLAN") {
		t.Errorf("error %q does not name FMOE_CUDA_BATCH_PLAN", err)
	}
}
