//go:build !linux && !darwin

package model

import (
	"fmt"
	"os"
	"runtime"
)

const noResidency = "not measured on " + runtime.GOOS

func openExpertFile(path string, direct bool) (*os.File, error) {
	if direct {
		return nil, fmt.Errorf("model: direct I/O is supported on linux (O_DIRECT) and darwin (F_NOCACHE), not %s", runtime.GOOS)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	return f, nil
}

func canProbe(string) bool { return false }

func residentPages(*os.File, int64, int64) (int, int) { return 0, 0 }
