//go:build unix

package fsguard

import (
	"os"
	"syscall"
)

// openNonBlocking opens with O_NONBLOCK, which makes opening a FIFO return at once; on a
// regular file the flag changes nothing.
func openNonBlocking(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
