//go:build !(amd64 || arm64) || purego

package cpu

func combine4ASM(dst, m0, m1, m2, m3, c *float32, n int) { panic("cpu: no combine4ASM") }

func deltaAsm(isa int) bool { return false }
