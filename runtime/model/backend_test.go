package model

import (
	"os"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cuda"
)

// testBackend is the backend the model tests run on: nil (Open's CPU
// default), or with FMOE_TEST_BACKEND=cuda a CUDA backend, so that the
// golden tests run on the GPU machine (scripts/gpu-check.sh). The backend
// is closed when the test ends.
func testBackend(t testing.TB) backend.Backend {
	t.Helper()
	switch name := os.Getenv("FMOE_TEST_BACKEND"); name {
	case "", "cpu":
		return nil
	case "cuda":
		be, err := cuda.New()
		if err != nil {
			t.Fatalf("FMOE_TEST_BACKEND=cuda: %v", err)
		}
		t.Cleanup(func() { be.Close() })
		return be
	default:
		t.Fatalf("FMOE_TEST_BACKEND=%q: want cpu or cuda", name)
	}
	return nil
}
