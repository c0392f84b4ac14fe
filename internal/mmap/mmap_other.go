//go:build !unix

package mmap

import "github.com/fmoe/fmoe/internal/fsguard"

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

// Release is a no-op without mmap.
func (f *File) Release(off, n int64) {}

// Sequential is a no-op without mmap.
func (f *File) Sequential() {}

// Close drops the data.
func (f *File) Close() error { f.Data = nil; return nil }
