//go:build darwin && arm64 && cgo

package metal

import (
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// TestConformanceMetal is the conformance suite on the real GPU.
func TestConformanceMetal(t *testing.T) {
	probe, err := New()
	if err != nil {
		t.Fatalf("metal.New: %v", err)
	}
	t.Logf("device: %s", probe.Name())
	probe.Close()
	backendtest.Run(t, func() backend.Backend {
		be, err := New()
		if err != nil {
			t.Fatal(err)
		}
		return be
	})
}
