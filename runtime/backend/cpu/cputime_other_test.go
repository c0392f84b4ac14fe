//go:build !unix

package cpu

import "time"

var start = time.Now()

// cpuTime falls back to the wall clock.
func cpuTime() time.Duration { return time.Since(start) }
