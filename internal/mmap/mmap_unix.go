//go:build unix

// Package mmap maps whole files read-only. The packer maps checkpoint shards and the runtime
// maps model_weights.bin, so neither copies gigabytes into the heap.
package mmap

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fmoe/fmoe/internal/fsguard"
)

// File is a read-only mapping of a whole file.
type File struct {
	Data []byte
	name string
}

// Open maps path read-only. An empty file maps to an empty slice. Only regular files are
// opened: a named pipe would block the open forever.
func Open(path string) (*File, error) {
	f, err := fsguard.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size == 0 {
		return &File{name: path}, nil
	}
	if int64(int(size)) != size {
		return nil, fmt.Errorf("%s: %d bytes is too large to map", path, size)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return &File{Data: data, name: path}, nil
}

// Release tells the kernel this process is done with [off, off+n) for now: the pages leave the
// process's resident set but stay in the page cache. Streaming readers call it so RSS stays
// bounded while they walk a file far larger than memory.
func (f *File) Release(off, n int64) {
	page := int64(os.Getpagesize())
	start := off / page * page
	end := off + n
	if end > int64(len(f.Data)) {
		end = int64(len(f.Data))
	}
	end = end / page * page
	if end <= start {
		return
	}
	_ = madvise(f.Data[start:end], unix.MADV_DONTNEED)
}

// Sequential tells the kernel the mapping will be read front to back, so it reads ahead
// aggressively: the packer streams every shard once.
func (f *File) Sequential() {
	if len(f.Data) > 0 {
		_ = madvise(f.Data, unix.MADV_SEQUENTIAL)
	}
}

// Close unmaps the file.
func (f *File) Close() error {
	if f.Data == nil {
		return nil
	}
	err := syscall.Munmap(f.Data)
	f.Data = nil
	return err
}

func madvise(b []byte, advice int) error {
	return unix.Madvise(b, advice)
}
