package cpu

import (
	"os"
	"syscall"
	"testing"
	"unsafe"
)

// benchArena is where newBenchExperts lays its experts: nil (the Go heap)
// unless FMOE_BENCH_PAGES is "4k" or "huge", an anonymous mapping of n
// bytes advised against or toward transparent huge pages (the host tier's
// pinned memory is the driver's mapping, whose pages a CPU reading it
// through the TLB sees; this compares the two sizes on the same kernel).
func benchArena(b *testing.B, n int) []byte {
	adv := map[string]int{"4k": 15 /* MADV_NOHUGEPAGE */, "huge": 14 /* MADV_HUGEPAGE */}
	a, ok := adv[os.Getenv("FMOE_BENCH_PAGES")]
	if !ok {
		return nil
	}
	const huge = 2 << 20
	m, err := syscall.Mmap(-1, 0, n+huge, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { syscall.Munmap(m) })
	off := 0
	if r := uintptr(unsafe.Pointer(&m[0])) % huge; r != 0 {
		off = int(huge - r)
	}
	m = m[off : off+n]
	if err := syscall.Madvise(m, a); err != nil {
		b.Fatal(err)
	}
	return m
}
