//go:build !amd64 || purego

package cpu

func isaLevels() []int { return []int{isaGo} }

const isaAVX512 = -1 // no such level here
