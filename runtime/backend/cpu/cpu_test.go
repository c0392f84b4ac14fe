package cpu

import (
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

func TestConformanceAuto(t *testing.T) {
	be := New(Options{})
	t.Logf("kernels: %s", be.Name())
	be.Close()
	backendtest.Run(t, func() backend.Backend { return New(Options{}) })
}

func TestConformanceGo(t *testing.T) {
	backendtest.Run(t, func() backend.Backend { return New(Options{Path: PathGo}) })
}

func TestConformanceReference(t *testing.T) {
	backendtest.Run(t, func() backend.Backend { return New(Options{Path: PathReference}) })
}

// Seven threads: parts that end inside a job of MatVecBatch's batch and
// chunk sizes that are not powers of two.
func TestConformanceSevenThreads(t *testing.T) {
	backendtest.Run(t, func() backend.Backend { return New(Options{Threads: 7}) })
}

// Workers that sleep in the futex (Options.FutexWake) between ops.
func TestConformanceFutexWake(t *testing.T) {
	backendtest.Run(t, func() backend.Backend { return New(Options{Threads: 4, FutexWake: true}) })
}

func TestConformanceOneThread(t *testing.T) {
	backendtest.Run(t, func() backend.Backend { return New(Options{Threads: 1}) })
}

// The DeltaNet recurrence both ways on every case of the suite: chunked
// from two tokens on, and sequential only.
func TestConformanceDeltaChunked(t *testing.T) {
	backendtest.Run(t, func() backend.Backend { return New(Options{DeltaChunkMin: 2}) })
}

func TestConformanceDeltaSequential(t *testing.T) {
	backendtest.Run(t, func() backend.Backend { return New(Options{DeltaChunkMin: -1}) })
}
