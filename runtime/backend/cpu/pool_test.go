package cpu

import (
	"slices"
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
	for _, futex := range []bool{false, true} {
		poolWait(t, futex)
	}
}

func poolWait(t *testing.T, futex bool) {
	p := newPool(5, 0, futex)
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
				t.Fatalf("futex %v, run %d of %d parts: part %d done %d times when run returned", futex, run, k, i, got)
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
		futex   bool
	}{{0, 0, false}, {1, 0, false}, {3, 0, false}, {7, 0, false}, {3, 200 * time.Microsecond, false}, {7, time.Millisecond, false},
		{1, 0, true}, {7, 0, true}, {3, 200 * time.Microsecond, true}} {
		workers := pc.workers
		p := newPool(workers, pc.poll, pc.futex)
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
	p := newPool(3, 0, false)
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
	for _, workers := range []int{0, 1, 3, -3} { // -3: three workers with the futex wake
		p := newPool(abs(workers), 0, workers < 0)
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

func abs(n int) int { return max(n, -n) }

// TestPoolFutex: with the futex wake idle workers do sleep in the futex
// (not on their channels), an op after the idle wakes them and computes
// every item once, over many idles, and close ends sleeping workers. The
// caller sleeps on each chunk it takes, so an op whose workers' wake is
// lost lasts until their futex nap ends (futexNap); woken, they take the
// chunks at once.
func TestPoolFutex(t *testing.T) {
	if !futexOK {
		t.Skip("no futex wake on this system")
	}
	p := newPool(3, 0, true)
	const rounds = 20
	var took []time.Duration
	for round := range rounds {
		deadline := time.Now().Add(2 * time.Second)
		for p.wk.sleepers.Load() != 3 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d of 3 idle workers asleep in the futex after 2 s", round, p.wk.sleepers.Load())
			}
			time.Sleep(100 * time.Microsecond)
		}
		const n = 64
		c := &itemTask{seen: make([]atomic.Int32, n), slow: 0}
		t0 := time.Now()
		p.runShared(c, n, 4)
		took = append(took, time.Since(t0))
		for i := range n {
			if got := c.seen[i].Load(); got != 1 {
				t.Fatalf("round %d: item %d computed %d times", round, i, got)
			}
		}
	}
	slices.Sort(took)
	if med := took[rounds/2]; med > futexNap/3 {
		t.Errorf("an op after the workers fell asleep took %v (median of %d): their wake is lost, the nap ends it", med, rounds)
	}
	for p.wk.sleepers.Load() != 3 {
		time.Sleep(100 * time.Microsecond)
	}
	p.close()
	deadline := time.Now().Add(2 * time.Second)
	for p.live.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still running 2 s after close", p.live.Load())
		}
		time.Sleep(100 * time.Microsecond)
	}
}
