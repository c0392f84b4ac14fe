//go:build !amd64 || purego

package cpu

func combine4AVX2(dst, m0, m1, m2, m3, c *float32, n int) { panic("cpu: no combine4AVX2") }

func deltaAsm(isa int) bool { return false }
