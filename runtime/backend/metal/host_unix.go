//go:build unix

package metal

import "golang.org/x/sys/unix"

// allocHost maps anonymous memory: page-aligned and outside the Go heap,
// so the GPU may keep a pointer to it (cgo forbids that for Go memory).
func allocHost(n int) ([]byte, error) {
	return unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
}

func freeHost(b []byte) error { return unix.Munmap(b) }
