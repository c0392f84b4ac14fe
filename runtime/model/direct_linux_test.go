package model

import (
	"os"

	"golang.org/x/sys/unix"
)

// bypassesCache reports whether f was opened with O_DIRECT.
func bypassesCache(f *os.File) (bool, error) {
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	return err == nil && fl&unix.O_DIRECT != 0, err
}

// evict drops f's clean pages from the page cache.
func evict(f *os.File) error { return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED) }
