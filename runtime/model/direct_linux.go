package model

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

const noResidency = "not measured: mincore needs ownership of or write permission on the expert files"

func openExpertFile(path string, direct bool) (*os.File, error) {
	if !direct {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		return f, nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		if errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("model: direct I/O: the filesystem of %s refuses O_DIRECT (tmpfs and some network filesystems do): %w", path, err)
		}
		return nil, fmt.Errorf("model: %w", err)
	}
	if err := probeDirect(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// canProbe reports whether mincore tells the truth about path: since Linux
// 5.0 it reports every page of a file mapping as resident unless the
// caller owns the file or may write it, to close a cache side channel.
func canProbe(path string) bool {
	var st unix.Stat_t
	if unix.Stat(path, &st) == nil && int(st.Uid) == os.Geteuid() {
		return true
	}
	return unix.Access(path, unix.W_OK) == nil
}

// residentPages maps [off, off+n) of f without touching it and asks
// mincore which of its pages are in the page cache. It returns 0, 0 when
// the probe fails, which Timing counts as not probed.
func residentPages(f *os.File, off, n int64) (resident, pages int) {
	ps := int64(os.Getpagesize())
	start := off &^ (ps - 1)
	length := off + n - start
	if n <= 0 || length > int64(^uint(0)>>1) {
		return 0, 0
	}
	m, err := unix.Mmap(int(f.Fd()), start, int(length), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, 0
	}
	defer unix.Munmap(m)
	vec := make([]byte, (length+ps-1)/ps)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(length), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		return 0, 0
	}
	for _, v := range vec {
		resident += int(v & 1)
	}
	return resident, len(vec)
}
