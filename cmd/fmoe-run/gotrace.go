package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/trace"
)

// goTrace starts a Go execution trace into path when it is set (fmoe-run's
// FMOE_GO_TRACE, a measuring aid beside FMOE_CUDA_TRACE rather than a
// flag): where the goroutines and the CPU share's worker threads wait for
// a thread or for each other, with the share's stages marked
// (runtime/model's share.* regions), read by scripts/go-trace-share.py.
// The trace goes to a temporary name in path's folder and is renamed to
// path by the returned stop, so a run cut short leaves no partial file
// under the name asked for.
func goTrace(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("FMOE_GO_TRACE=%s: %w", path, err)
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("FMOE_GO_TRACE=%s: %w", path, err)
	}
	return func() error {
		trace.Stop()
		err := f.Close()
		if err == nil {
			err = os.Rename(f.Name(), path)
		}
		if err != nil {
			os.Remove(f.Name())
			return fmt.Errorf("FMOE_GO_TRACE=%s: %w", path, err)
		}
		return nil
	}, nil
}
