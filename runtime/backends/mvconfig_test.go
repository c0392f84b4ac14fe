//go:build linux && cgo

package backends

import (
	"strings"
	"testing"
)

// TestAutoBadMatvecSetting: a bad FMOE_CUDA_MV is the user's mistake, not
// a missing GPU, so auto reports it instead of falling back to the CPU.
func TestAutoBadMatvecSetting(t *testing.T) {
	t.Setenv("FMOE_CUDA_MV", "nr=0")
	be, err := Open("auto", Options{})
	if err == nil {
		be.Close()
		t.Fatal("auto opened a backend with FMOE_CUDA_MV=nr=0")
	}
	if !strings.Contains(err.Error(), `FMOE_CUDA_MV="nr=0": nr=0: want 1 to 8`) {
		t.Errorf("error %q does not say what is wrong", err)
	}
}
