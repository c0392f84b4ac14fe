//go:build !unix

package mmap

import (
	"fmt"

	"github.com/fmoe/fmoe/internal/fsguard"
)

// File holds a whole file. Without mmap the portable fallback reads it into memory.
type File struct {
	Data []byte
}

// Open reads path.
func Open(path string) (*File, error) {
	data, err := fsguard.ReadRegular(path)
	if err != nil {
		return nil, err
	}
	return &File{Data: data}, nil
}

// OpenPrivate reads path: the copy in memory is already private.
func OpenPrivate(path string) (*File, error) { return Open(path) }

// Overwrite copies b over Data[off:] in memory; the file never changes.
func (f *File) Overwrite(off int, b []byte) error {
	if off < 0 || off+len(b) > len(f.Data) {
		return fmt.Errorf("mmap: Overwrite of [%d, %d) outside the %d-byte file", off, off+len(b), len(f.Data))
	}
	copy(f.Data[off:], b)
	return nil
}

// Release is a no-op without mmap.
func (f *File) Release(off, n int64) {}

// Sequential is a no-op without mmap.
func (f *File) Sequential() {}

// Close drops the data.
func (f *File) Close() error { f.Data = nil; return nil }

// Zero holds size bytes that read as head followed by zeros (in memory, without mmap).
func Zero(name string, size int64, head []byte) (*File, error) {
	if int64(int(size)) != size || size < int64(len(head)) {
		return nil, fmt.Errorf("%s: cannot stand in %d bytes with a %d-byte head", name, size, len(head))
	}
	data := make([]byte, size)
	copy(data, head)
	return &File{Data: data}, nil
}
