//go:build !(amd64 || arm64) || purego

package cpu

func isaLevels() []int { return []int{isaGo} }
