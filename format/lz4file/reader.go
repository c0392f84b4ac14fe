// Package lz4file reads the LZ4 copy of an expert set that fmoe-pack lz4 writes (the LZ4
// experiment, docs/negative-results.md). It lives apart from package pack so that fmoe-run can
// read the copy without linking the packer.
//
// The copy lives beside the set it copies (packed_experts_lz4/ for packed_experts/) and is not
// recorded in the manifest, which stays the authority on the raw files. layer_NN.lz4 is
// little-endian:
//
//	header  magic "FMOELZ4\x00", version u32 (1), layer u32, experts u32, reserved u32, stride u64
//	index   experts x {offset u64, size u32, method u32 (0 stored, 1 LZ4 block), crc32c u32 of
//	        the stored bytes, crc32c u32 of the raw block (the manifest's)}
//	blocks  each expert's bytes at its offset, one independently decodable LZ4 block (or the raw
//	        block when LZ4 would make it larger), back to back
package lz4file

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/pierrec/lz4/v4"
)

// The layout's constants, shared with the writer (package pack).
const (
	Magic        = "FMOELZ4\x00"
	Version      = 1
	HeaderSize   = 32
	EntrySize    = 24
	MethodStored = 0
	MethodBlock  = 1
)

// Dir is the directory of the LZ4 copy of an expert set directory.
func Dir(setDir string) string { return setDir + "_lz4" }

// FileName is the LZ4 copy of layer l's expert file.
func FileName(l int) string { return fmt.Sprintf("layer_%02d.lz4", l) }

// Layer reads experts from one layer file of an LZ4 copy. It is safe for concurrent use:
// each ReadExpert is one pread into a pooled buffer and one decompression.
type Layer struct {
	f      *os.File
	path   string
	stride int64
	index  []entry
	bufs   sync.Pool
}

type entry struct {
	off         int64
	size        int64
	method      uint32
	crc, rawCRC uint32
}

// Open opens layer l of the LZ4 copy in dir (e.g. MODEL/packed_experts_lz4) and checks its
// header and index against the file.
func Open(dir string, layer int) (*Layer, error) {
	path := filepath.Join(dir, FileName(layer))
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	l, err := readIndex(f, path, layer)
	if err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

func readIndex(f *os.File, path string, layer int) (*Layer, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	head := make([]byte, HeaderSize)
	if _, err := f.ReadAt(head, 0); err != nil {
		return nil, fmt.Errorf("%s: reading header: %w", path, err)
	}
	if string(head[:8]) != Magic {
		return nil, fmt.Errorf("%s: not an fmoe LZ4 expert file (bad magic)", path)
	}
	if v := binary.LittleEndian.Uint32(head[8:]); v != Version {
		return nil, fmt.Errorf("%s: version %d, this build reads %d", path, v, Version)
	}
	if got := binary.LittleEndian.Uint32(head[12:]); got != uint32(layer) {
		return nil, fmt.Errorf("%s: holds layer %d, want %d", path, got, layer)
	}
	experts := int64(binary.LittleEndian.Uint32(head[16:]))
	stride := int64(binary.LittleEndian.Uint64(head[24:]))
	indexEnd := HeaderSize + EntrySize*experts // experts < 2^32: no overflow
	if stride <= 0 || stride > 1<<32 || indexEnd > size {
		return nil, fmt.Errorf("%s: header says %d experts of %d bytes, the file has %d bytes", path, experts, stride, size)
	}
	raw := make([]byte, indexEnd-HeaderSize)
	if _, err := f.ReadAt(raw, HeaderSize); err != nil {
		return nil, fmt.Errorf("%s: reading index: %w", path, err)
	}
	l := &Layer{f: f, path: path, stride: stride, index: make([]entry, experts)}
	maxSize := int64(lz4.CompressBlockBound(int(stride)))
	for e := range l.index {
		b := raw[e*EntrySize:]
		off := binary.LittleEndian.Uint64(b)
		ent := entry{size: int64(binary.LittleEndian.Uint32(b[8:])),
			method: binary.LittleEndian.Uint32(b[12:]), crc: binary.LittleEndian.Uint32(b[16:]), rawCRC: binary.LittleEndian.Uint32(b[20:])}
		// Compare in the unsigned domain and against size-ent.size, so that an offset near
		// 2^64 can neither wrap negative nor make off+size wrap past the check.
		switch {
		case off < uint64(indexEnd) || off > uint64(size-ent.size):
			return nil, fmt.Errorf("%s: expert %d at offset %d (+%d bytes) is outside the data (%d..%d)", path, e, off, ent.size, indexEnd, size)
		case ent.method == MethodStored && ent.size != stride, ent.method == MethodBlock && (ent.size == 0 || ent.size > maxSize), ent.method > MethodBlock:
			return nil, fmt.Errorf("%s: expert %d: method %d with %d bytes for a %d-byte block", path, e, ent.method, ent.size, stride)
		}
		ent.off = int64(off)
		l.index[e] = ent
	}
	l.bufs.New = func() any { b := make([]byte, maxSize); return &b }
	return l, nil
}

// Experts is the number of experts in the layer.
func (l *Layer) Experts() int { return len(l.index) }

// Stride is the size of one decompressed expert block.
func (l *Layer) Stride() int64 { return l.stride }

// CompressedSize is expert e's size on disk.
func (l *Layer) CompressedSize(e int) int64 { return l.index[e].size }

// RawCRC32C is the manifest's checksum of expert e's decompressed block, for callers that
// check what they read.
func (l *Layer) RawCRC32C(e int) uint32 { return l.index[e].rawCRC }

// ReadExpert reads expert e and decompresses it into dst[:Stride()], exactly the bytes of the
// raw expert file's block.
func (l *Layer) ReadExpert(e int, dst []byte) error {
	if e < 0 || e >= len(l.index) {
		return fmt.Errorf("%s: no expert %d (the layer has %d)", l.path, e, len(l.index))
	}
	if int64(len(dst)) < l.stride {
		return fmt.Errorf("%s: buffer of %d bytes for a %d-byte expert", l.path, len(dst), l.stride)
	}
	ent := l.index[e]
	dst = dst[:l.stride]
	if ent.method == MethodStored {
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
func (l *Layer) Close() error { return l.f.Close() }
