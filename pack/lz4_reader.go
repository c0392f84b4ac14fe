package pack

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/pierrec/lz4/v4"
)

// LZ4Layer reads experts from one layer file of an LZ4 copy. It is safe for concurrent use:
// each ReadExpert is one pread into a pooled buffer and one decompression.
type LZ4Layer struct {
	f      *os.File
	path   string
	stride int64
	index  []lz4Entry
	bufs   sync.Pool
}

type lz4Entry struct {
	off         int64
	size        int64
	method      uint32
	crc, rawCRC uint32
}

// OpenLZ4 opens layer l of the LZ4 copy in dir (e.g. MODEL/packed_experts_lz4) and checks its
// header and index against the file.
func OpenLZ4(dir string, layer int) (*LZ4Layer, error) {
	path := filepath.Join(dir, LZ4FileName(layer))
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	l, err := readLZ4Index(f, path, layer)
	if err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

func readLZ4Index(f *os.File, path string, layer int) (*LZ4Layer, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	head := make([]byte, lz4HeaderSize)
	if _, err := f.ReadAt(head, 0); err != nil {
		return nil, fmt.Errorf("%s: reading header: %w", path, err)
	}
	if string(head[:8]) != lz4Magic {
		return nil, fmt.Errorf("%s: not an fmoe LZ4 expert file (bad magic)", path)
	}
	if v := binary.LittleEndian.Uint32(head[8:]); v != lz4Version {
		return nil, fmt.Errorf("%s: version %d, this build reads %d", path, v, lz4Version)
	}
	if got := binary.LittleEndian.Uint32(head[12:]); got != uint32(layer) {
		return nil, fmt.Errorf("%s: holds layer %d, want %d", path, got, layer)
	}
	experts := int64(binary.LittleEndian.Uint32(head[16:]))
	stride := int64(binary.LittleEndian.Uint64(head[24:]))
	indexEnd := lz4HeaderSize + lz4EntrySize*experts
	if stride <= 0 || stride > 1<<32 || indexEnd > size {
		return nil, fmt.Errorf("%s: header says %d experts of %d bytes, the file has %d bytes", path, experts, stride, size)
	}
	raw := make([]byte, indexEnd-lz4HeaderSize)
	if _, err := f.ReadAt(raw, lz4HeaderSize); err != nil {
		return nil, fmt.Errorf("%s: reading index: %w", path, err)
	}
	l := &LZ4Layer{f: f, path: path, stride: stride, index: make([]lz4Entry, experts)}
	maxSize := int64(lz4.CompressBlockBound(int(stride)))
	for e := range l.index {
		b := raw[e*lz4EntrySize:]
		ent := lz4Entry{off: int64(binary.LittleEndian.Uint64(b)), size: int64(binary.LittleEndian.Uint32(b[8:])),
			method: binary.LittleEndian.Uint32(b[12:]), crc: binary.LittleEndian.Uint32(b[16:]), rawCRC: binary.LittleEndian.Uint32(b[20:])}
		switch {
		case ent.off < indexEnd || ent.off+ent.size > size:
			return nil, fmt.Errorf("%s: expert %d at [%d, %d) is outside the data (%d..%d)", path, e, ent.off, ent.off+ent.size, indexEnd, size)
		case ent.method == lz4Stored && ent.size != stride, ent.method == lz4Block && (ent.size == 0 || ent.size > maxSize), ent.method > lz4Block:
			return nil, fmt.Errorf("%s: expert %d: method %d with %d bytes for a %d-byte block", path, e, ent.method, ent.size, stride)
		}
		l.index[e] = ent
	}
	l.bufs.New = func() any { b := make([]byte, maxSize); return &b }
	return l, nil
}

// Experts is the number of experts in the layer.
func (l *LZ4Layer) Experts() int { return len(l.index) }

// Stride is the size of one decompressed expert block.
func (l *LZ4Layer) Stride() int64 { return l.stride }

// CompressedSize is expert e's size on disk.
func (l *LZ4Layer) CompressedSize(e int) int64 { return l.index[e].size }

// RawCRC32C is the manifest's checksum of expert e's decompressed block, for callers that
// check what they read.
func (l *LZ4Layer) RawCRC32C(e int) uint32 { return l.index[e].rawCRC }

// ReadExpert reads expert e and decompresses it into dst[:Stride()], exactly the bytes of the
// raw expert file's block.
func (l *LZ4Layer) ReadExpert(e int, dst []byte) error {
	if e < 0 || e >= len(l.index) {
		return fmt.Errorf("%s: no expert %d (the layer has %d)", l.path, e, len(l.index))
	}
	if int64(len(dst)) < l.stride {
		return fmt.Errorf("%s: buffer of %d bytes for a %d-byte expert", l.path, len(dst), l.stride)
	}
	ent := l.index[e]
	dst = dst[:l.stride]
	if ent.method == lz4Stored {
		if _, err := l.f.ReadAt(dst, ent.off); err != nil {
			return fmt.Errorf("%s: expert %d: %w", l.path, e, err)
		}
		return nil
	}
	bp := l.bufs.Get().(*[]byte)
	defer l.bufs.Put(bp)
	src := (*bp)[:ent.size]
	if _, err := l.f.ReadAt(src, ent.off); err != nil {
		return fmt.Errorf("%s: expert %d: %w", l.path, e, err)
	}
	n, err := lz4.UncompressBlock(src, dst)
	if err != nil {
		return fmt.Errorf("%s: expert %d: corrupt LZ4 block: %w", l.path, e, err)
	}
	if int64(n) != l.stride {
		return fmt.Errorf("%s: expert %d: decompressed to %d bytes, want %d", l.path, e, n, l.stride)
	}
	return nil
}

// Close closes the file.
func (l *LZ4Layer) Close() error { return l.f.Close() }
