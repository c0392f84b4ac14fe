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
	p := newPool(5, 0)
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

// itemTask counts how often each item is computed and by which part; one
// part may be slow on every chunk it takes.
type itemTask struct {
	seen   []atomic.Int32
	chunks [8]atomic.Int32 // chunks taken, per part
	slow   int             // the part that sleeps on each chunk (-1: none)
}

func (c *itemTask) do(part, lo, hi int) {
	if part == c.slow {
		time.Sleep(300 * time.Microsecond)
	}
	c.chunks[part].Add(1)
	for i := lo; i < hi; i++ {
		c.seen[i].Add(1)
	}
}

// TestPoolShared: runShared computes every item exactly once, for any
// count of items, chunk size and parts (the last chunk short, fewer chunks
// than parts, a pool of no workers; workers that poll without yielding,
// Options.Poll), and a part slowed on every chunk takes fewer chunks than
// its even share, the others taking the rest.
func TestPoolShared(t *testing.T) {
	for _, pc := range []struct {
		workers int
		poll    time.Duration
	}{{0, 0}, {1, 0}, {3, 0}, {7, 0}, {3, 200 * time.Microsecond}, {7, time.Millisecond}} {
		workers := pc.workers
		p := newPool(workers, pc.poll)
		p.runShared(&itemTask{slow: -1}, 0, 4) // nothing to do: returns at once
		for _, n := range []int{1, 4, 17, 64, 1000} {
			for _, chunk := range []int{1, 4, 16, 333, 2000} {
				c := &itemTask{seen: make([]atomic.Int32, n), slow: -1}
				p.runShared(c, n, chunk)
				for i := range n {
					if got := c.seen[i].Load(); got != 1 {
						t.Fatalf("%d workers, %d items in chunks of %d: item %d computed %d times", workers, n, chunk, i, got)
					}
				}
				if p.sh.t != nil {
					t.Fatalf("%d workers: runShared kept its task", workers)
				}
			}
		}
		p.close()
	}
	p := newPool(3, 0)
	defer p.close()
	const n, chunk = 4096, 16 // 256 chunks, 64 a part if dealt evenly
	c := &itemTask{seen: make([]atomic.Int32, n), slow: 2}
	p.runShared(c, n, chunk)
	slow, total := c.chunks[2].Load(), int32(0)
	for i := range c.chunks {
		total += c.chunks[i].Load()
	}
	if total != n/chunk || slow >= n/chunk/4 {
		t.Fatalf("a slow part took %d of %d chunks (want fewer than %d, an even share)", slow, total, n/chunk/4)
	}
}

// TestPoolPrime: primed workers (polling for an announced op) compute the
// op that comes, every item once, whether it comes at once, after the
// prime has run out, or after a second prime; priming never blocks, and
// after close it does nothing.
func TestPoolPrime(t *testing.T) {
	for _, workers := range []int{0, 1, 3} {
		p := newPool(workers, 0)
		for _, wait := range []time.Duration{0, 3 * time.Millisecond} {
			p.prime(time.Millisecond)
			p.prime(time.Millisecond) // a second prime while the first is pending or polling
			time.Sleep(wait)
			const n = 100
			c := &itemTask{seen: make([]atomic.Int32, n), slow: -1}
			p.runShared(c, n, 3)
			for i := range n {
				if got := c.seen[i].Load(); got != 1 {
					t.Fatalf("%d workers, after %v: item %d computed %d times", workers, wait, i, got)
				}
			}
		}
		p.close()
		p.prime(time.Millisecond)
	}
}
