//go:build linux && cgo

package cuda

import (
	"bytes"
	"os"
	"sync"
	"testing"

	"github.com/fmoe/fmoe/shaders"
)

// TestKernelsCompile compiles the kernel source with whatever NVRTC is
// installed, for sm_90 (the H200 the project measures on), with no driver
// or device: a syntax or type error in a kernel fails here, on a machine
// without a GPU (Debian's libnvrtc11.2 will do), rather than at the first
// New on one. .ci/run installs Debian's NVRTC and sets FMOE_NVRTC_REQUIRE=1,
// so that in CI a missing NVRTC fails instead of skipping. Besides the
// default matvec settings (with the integer matvec's SMX kernels, which New adds by default) it compiles
// the sweep grid's extremes (fewest and most registers per warp), in
// parallel as BenchmarkMatVecSweep does.
func TestKernelsCompile(t *testing.T) {
	if err := loadNVRTC(); err != nil {
		if os.Getenv("FMOE_NVRTC_REQUIRE") != "" {
			t.Fatalf("FMOE_NVRTC_REQUIRE is set: %v", err)
		}
		t.Skipf("no NVRTC: %v", err)
	}
	cfgs := []MatvecConfig{{Rows: DefaultMatvecRows, Unroll: DefaultMatvecUnroll}, {Rows: 1, Unroll: 2}, {Rows: DefaultBatchMatvecRows, Unroll: DefaultBatchMatvecUnroll},
		{Rows: DefaultMatvecRows, Unroll: DefaultMatvecUnroll, Depth: 2}, {Rows: DefaultMatvecRows, Unroll: DefaultMatvecUnroll, MinBlocks: 4}}
	var wg sync.WaitGroup
	for i, c := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defs := c.defines()
			if i == 0 {
				// The integer matvec's SMX kernels (cp.async), on by default.
				defs = append(defs, "-DFMOE_MMV_SMX=1")
			}
			im, _, err := compile(shaders.CUDA(), "90", defs)
			if err != nil {
				t.Errorf("sm_90 %v: %v", defs, err)
				return
			}
			t.Logf("sm_90 %v: %s, %d bytes", defs, im.desc, len(im.data))
			// The entry points the backend looks up by name at New are there.
			for _, name := range append(mmaNames[:], batchNames[:]...) {
				if !bytes.Contains(im.data, []byte(name)) {
					t.Errorf("sm_90 %v: no entry point %s", defs, name)
				}
			}
		}()
	}
	wg.Wait()
}

// TestImageKeyCoversOptions: modules compiled with other matvec settings
// must not be taken from the cache for these.
func TestImageKeyCoversOptions(t *testing.T) {
	a := MatvecConfig{Rows: 2, Unroll: 4}.defines()
	b := MatvecConfig{Rows: 4, Unroll: 2}.defines()
	ka, kb := imageKey("src", "90", "13.0", a), imageKey("src", "90", "13.0", b)
	if ka == kb || ka == imageKey("src", "90", "13.0", nil) {
		t.Errorf("keys %s (%v), %s (%v) collide", ka, a, kb, b)
	}
	if ka != imageKey("src", "90", "13.0", a) {
		t.Error("key not deterministic")
	}
}
