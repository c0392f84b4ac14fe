package pagecache

import (
	"os"

	"golang.org/x/sys/unix"
)

// Drop evicts f's clean pages from the page cache.
func Drop(f *os.File) error { return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED) }

// WillNeed starts reading f's pages into the page cache.
func WillNeed(f *os.File) error { return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_WILLNEED) }
