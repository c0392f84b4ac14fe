package model

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

const noResidency = "not measured on darwin"

// openExpertFile opens path; direct sets F_NOCACHE, macOS's way of keeping
// a file's reads out of the unified buffer cache (it has no O_DIRECT).
func openExpertFile(path string, direct bool) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if direct {
		if _, err := unix.FcntlInt(f.Fd(), unix.F_NOCACHE, 1); err != nil {
			f.Close()
			return nil, fmt.Errorf("model: direct I/O: F_NOCACHE on %s: %w", path, err)
		}
		if err := probeDirect(f); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

func canProbe(string) bool { return false }

func residentPages(*os.File, int64, int64) (int, int) { return 0, 0 }
