package metal

import (
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

func newSimBackend(t *testing.T, cc string, tweak func(*Backend, *simDevice), env ...string) func() backend.Backend {
	t.Logf("simulator built with %s", cc)
	return func() backend.Backend {
		d := newSimDevice(t, cc, env...)
		be, err := newBackend(d)
		if err != nil {
			t.Fatal(err)
		}
		if tweak != nil {
			tweak(be, d)
		}
		return be
	}
}

// TestConformanceSim runs the conformance suite on the Metal backend with
// the simulator as its device: the Metal build of the kernels, launched
// with this package's grids, arguments and threadgroup sizes. The
// simulator is built with the first C++ compiler found (clang++ before
// g++), TestConformanceSimTight's with the last, so that with both present
// each compiles the kernels once and the suite runs on both builds.
func TestConformanceSim(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the kernel simulator")
	}
	needCXX(t)
	backendtest.Run(t, newSimBackend(t, cxx()[0], nil))
}

// TestConformanceSimTight runs it again where the host must adapt: pipelines
// that allow only 128 threads per threadgroup (as register-heavy kernels
// can report), 3 matvec threadgroups (each loops over many row groups), and
// every exp, log and rsqrt off by up to 4 ulp, a pessimistic reading of
// Metal's precise-math bounds, to show the tolerances do not rest on the
// host's libm being better than the GPU's.
func TestConformanceSimTight(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the kernel simulator")
	}
	needCXX(t)
	ccs := cxx()
	backendtest.Run(t, newSimBackend(t, ccs[len(ccs)-1], func(be *Backend, d *simDevice) {
		d.threads = 128
		be.lim.MatvecBlocks = 3
	}, "FMOE_MOCK_ULP=4"))
}
