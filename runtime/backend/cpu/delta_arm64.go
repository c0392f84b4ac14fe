//go:build arm64 && !purego

package cpu

// combine4ASM is dst[x] += Σ_{r<4} c[r]·m_r[x] for x < n, n a multiple
// of 4 (kern_arm64.s, from asmgen_arm64.py): the chunked DeltaNet's only
// hot loop, with the multiply-adds in the order of the AVX2 version.
//
//go:noescape
func combine4ASM(dst, m0, m1, m2, m3, c *float32, n int)

// deltaAsm reports whether the chunked DeltaNet can use combine4ASM.
func deltaAsm(isa int) bool { return isa >= isaNEON }
