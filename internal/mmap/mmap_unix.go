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
	Data    []byte
	name    string
	private bool
}

// Open maps path read-only. An empty file maps to an empty slice. Only regular files are
// opened: a named pipe would block the open forever.
func Open(path string) (*File, error) { return open(path, syscall.MAP_SHARED) }

// OpenPrivate maps path read-only and copy-on-write, so that Overwrite can change this
// process's view of a few bytes (the packer retypes FP8 entries of a safetensors header, see
// pack/fp8_header.go) without writing the file. Pages never overwritten are the page cache's,
// exactly as with Open; the mapping stays read-only, so it reserves no memory.
func OpenPrivate(path string) (*File, error) {
	f, err := open(path, syscall.MAP_PRIVATE)
	if f != nil {
		f.private = true
	}
	return f, err
}

func open(path string, flags int) (*File, error) {
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
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, flags)
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

// Overwrite copies b over Data[off:] in a mapping from OpenPrivate: the pages it touches become
// this process's private copies, writable only for the copy. The file never changes.
func (f *File) Overwrite(off int, b []byte) error {
	if !f.private {
		return fmt.Errorf("mmap %s: Overwrite needs a mapping from OpenPrivate", f.name)
	}
	if off < 0 || off+len(b) > len(f.Data) {
		return fmt.Errorf("mmap %s: Overwrite of [%d, %d) outside the %d-byte mapping", f.name, off, off+len(b), len(f.Data))
	}
	if len(b) == 0 {
		return nil
	}
	page := os.Getpagesize()
	pages := f.Data[off/page*page : min((off+len(b)+page-1)/page*page, len(f.Data))]
	if err := unix.Mprotect(pages, unix.PROT_READ|unix.PROT_WRITE); err != nil {
		return fmt.Errorf("mmap %s: %w", f.name, err)
	}
	copy(f.Data[off:], b)
	return unix.Mprotect(pages, unix.PROT_READ)
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

// Zero maps size bytes that read as head followed by zeros, backed by no file: untouched pages
// cost no memory. A streaming pack stands one in for each shard not downloaded yet, so the
// shard's tensors can be laid out from its header before its bytes exist (pack/stream.go).
func Zero(name string, size int64, head []byte) (*File, error) {
	if int64(int(size)) != size || size < int64(len(head)) {
		return nil, fmt.Errorf("mmap %s: cannot stand in %d bytes with a %d-byte head", name, size, len(head))
	}
	if size == 0 {
		return &File{name: name, private: true}, nil
	}
	data, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ, syscall.MAP_ANON|syscall.MAP_PRIVATE|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", name, err)
	}
	f := &File{Data: data, name: name, private: true}
	if err := f.Overwrite(0, head); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
