//go:build unix

package cpu

import (
	"syscall"
	"time"
)

// cpuTime is the process's user+system CPU time. The benchmarks time with it
// as well as the wall clock: on a machine shared with other work a
// descheduled thread inflates wall time but not CPU time (a thread stalled
// on memory is still running, so memory-bound code is charged in full).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
