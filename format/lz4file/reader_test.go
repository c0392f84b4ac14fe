package lz4file

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeLayer writes a one-expert layer 0 file holding a stored (raw) block, with the index
// entry's offset set to off.
func writeLayer(t *testing.T, dir string, blk []byte, off uint64) {
	t.Helper()
	b := make([]byte, HeaderSize+EntrySize)
	copy(b, Magic)
	binary.LittleEndian.PutUint32(b[8:], Version)
	binary.LittleEndian.PutUint32(b[16:], 1)
	binary.LittleEndian.PutUint64(b[24:], uint64(len(blk)))
	e := b[HeaderSize:]
	binary.LittleEndian.PutUint64(e, off)
	binary.LittleEndian.PutUint32(e[8:], uint32(len(blk)))
	binary.LittleEndian.PutUint32(e[12:], MethodStored)
	if err := os.WriteFile(filepath.Join(dir, FileName(0)), append(b, blk...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// An index offset near 2^63 or 2^64 must be refused at Open, not wrap past the bounds check
// (offset + size overflowing int64) and fail or panic at read time.
func TestOpenRefusesOverflowingOffsets(t *testing.T) {
	dir := t.TempDir()
	blk := []byte("0123456789abcdef")
	writeLayer(t, dir, blk, HeaderSize+EntrySize)
	l, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(blk))
	if err := l.ReadExpert(0, got); err != nil || !bytes.Equal(got, blk) {
		t.Fatalf("good file: %q, %v", got, err)
	}
	l.Close()
	for _, off := range []uint64{math.MaxInt64, math.MaxInt64 - 8, 1 << 63, math.MaxUint64 - 8} {
		writeLayer(t, dir, blk, off)
		l, err := Open(dir, 0)
		if err == nil {
			l.Close()
			t.Errorf("offset %d accepted", off)
		} else if !strings.Contains(err.Error(), "outside the data") {
			t.Errorf("offset %d: %v", off, err)
		}
	}
}
