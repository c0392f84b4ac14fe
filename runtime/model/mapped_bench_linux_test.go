package model

import (
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fmoe/fmoe/internal/mmap"
)

// BenchmarkBlockMapped asks what a CPU that computes experts would pay to
// have a page-cached expert block in front of it (docs/benchmarks.md,
// "Checksums on the run path"): "pread" copies the block into a buffer as
// the expert reader does, then one pass reads the buffer; "mapped" reads
// it through a mapping whose page tables are already filled (a block the
// process used before, still cached); "faulted" through a mapping whose
// page tables were dropped (MADV_DONTNEED: a block newly cached, first
// touched by the pass); "populated" the same, filled by one
// MADV_POPULATE_READ before the pass (Linux 5.14+). The pass is the same
// in all four (a sum of 8-byte words), the stand-in for a kernel's read.
func BenchmarkBlockMapped(b *testing.B) {
	const blocks = 16
	path := randomFile(b, blocks*block397)
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	m, err := mmap.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	buf := alignedBuf(block397)
	for i := range blocks { // the file into the page cache
		f.ReadAt(buf, int64(i)*block397)
	}
	var sink uint64
	span := func(i int) []byte {
		off := (i % blocks) * block397 &^ 4095
		return m.Data[off : off+block397&^4095]
	}
	for _, mode := range []string{"pread", "mapped", "faulted", "populated"} {
		b.Run(mode, func(b *testing.B) {
			for i := range blocks {
				sink += sumWords(span(i)) // page tables filled
			}
			b.SetBytes(block397)
			i := 0
			for b.Loop() {
				var p []byte
				switch mode {
				case "pread":
					if _, err := f.ReadAt(buf, int64(i%blocks)*block397); err != nil {
						b.Fatal(err)
					}
					p = buf
				case "mapped":
					p = span(i)
				case "faulted", "populated":
					p = span(i)
					if err := unix.Madvise(p, unix.MADV_DONTNEED); err != nil {
						b.Fatal(err)
					}
					if mode == "populated" {
						if err := unix.Madvise(p, unix.MADV_POPULATE_READ); err != nil {
							b.Skipf("MADV_POPULATE_READ: %v", err)
						}
					}
				}
				sink += sumWords(p)
				i++
			}
		})
	}
	if sink == 1 {
		b.Log(sink)
	}
}

// sumWords adds p's 8-byte words (len(p) a multiple of 8).
func sumWords(p []byte) uint64 {
	w := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(p))), len(p)/8)
	var s0, s1, s2, s3 uint64
	for i := 0; i+4 <= len(w); i += 4 {
		s0 += w[i]
		s1 += w[i+1]
		s2 += w[i+2]
		s3 += w[i+3]
	}
	return s0 + s1 + s2 + s3
}
