//go:build !linux

package cpu

import "testing"

// benchArena is the Go heap where there is no madvise to choose pages.
func benchArena(*testing.B, int) []byte { return nil }
