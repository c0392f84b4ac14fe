//go:build !amd64 || purego

package cpu

func isaLevels() []int { return []int{isaGo} }
