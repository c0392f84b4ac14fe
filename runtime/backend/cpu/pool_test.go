package cpu

import (
	"sync/atomic"
	"testing"
	"time"
)

// countTask marks each part done, slowly for some, so that a run returns
// while late workers of it are still finishing only if the pool's wait is
// wrong.
type countTask struct {
	done [8]atomic.Int32
	slow int // the part that sleeps before it marks itself
}

func (c *countTask) do(part, lo, hi int) {
	if part == c.slow {
		time.Sleep(time.Duration(part%3) * 150 * time.Microsecond) // past spinFor: the caller sleeps
	}
	c.done[part].Add(1)
}

// TestPoolWait: every run returns only after all of its parts are done,
// whether the caller's wait ends spinning or asleep, and with the token a
// run's last worker leaves for a sleeping caller sometimes left over from
// the run before (a caller that spun to the end does not take it).
func TestPoolWait(t *testing.T) {
	p := newPool(5)
	defer p.close()
	var c countTask
	for run := range 3000 {
		k := 1 + run%6 // parts this run: 1 … 6
		c.slow = run % 7
		for i := range c.done {
			c.done[i].Store(0)
		}
		p.run(&c, k, 1)
		for i := range k {
			if got := c.done[i].Load(); got != 1 {
				t.Fatalf("run %d of %d parts: part %d done %d times when run returned", run, k, i, got)
			}
		}
	}
}
