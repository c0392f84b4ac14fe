//go:build !linux

package cpu

import (
	"sync/atomic"
	"time"
)

// futexOK says the futex wake (Options.FutexWake) is available here: on
// Linux only; elsewhere the workers sleep on their channels.
const futexOK = false

func futexWait(addr *atomic.Uint32, val uint32, d time.Duration) {}

func futexWake(addr *atomic.Uint32) {}
