//go:build linux && cgo

package cuda

import (
	"os"
	"testing"

	"github.com/fmoe/fmoe/shaders"
)

// TestKernelsCompile compiles the kernel source with whatever NVRTC is
// installed, for sm_90 (the H200 the project measures on), with no driver
// or device: a syntax or type error in a kernel fails here, on a machine
// without a GPU (Debian's libnvrtc11.2 will do), rather than at the first
// New on one. .ci/run installs Debian's NVRTC and sets FMOE_NVRTC_REQUIRE=1,
// so that in CI a missing NVRTC fails instead of skipping.
func TestKernelsCompile(t *testing.T) {
	if err := loadNVRTC(); err != nil {
		if os.Getenv("FMOE_NVRTC_REQUIRE") != "" {
			t.Fatalf("FMOE_NVRTC_REQUIRE is set: %v", err)
		}
		t.Skipf("no NVRTC: %v", err)
	}
	for _, cc := range []string{"90"} {
		im, _, err := compile(shaders.CUDA(), cc)
		if err != nil {
			t.Fatalf("sm_%s: %v", cc, err)
		}
		t.Logf("sm_%s: %s, %d bytes", cc, im.desc, len(im.data))
	}
}
