package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// task is one parallel op: do computes the items [lo, hi) as part number
// part (0 on the calling goroutine), which indexes per-part scratch.
//
// Ops pass a pointer to a task struct held by the Backend, not a closure:
// a closure handed to another goroutine escapes and costs an allocation per
// op, and a decode step runs thousands of ops.
type task interface {
	do(part, lo, hi int)
}

// span is one part of a task sent to a worker.
type span struct {
	t            task
	part, lo, hi int
}

// pool is a fixed set of worker goroutines that live as long as their
// Backend, so an op costs channel sends instead of goroutine starts. The
// workers hold no reference to the Backend: a cleanup stops them when it is
// garbage collected without Close.
//
// Between ops the workers and the caller spin for up to spinFor before
// they sleep: a decode step is a chain of short ops (a 397B expert's
// projection is ~75 µs on two cores), and waking a sleeping thread costs
// tens of µs on a virtual machine, paid by every part of every op
// (BenchmarkExperts: ten experts one MatMul at a time ran at 17 GB/s where
// the same rows in two dispatches ran at 31).
type pool struct {
	work    []chan span // one per worker; the caller is part 0
	pending atomic.Int32
	done    chan struct{} // a token from the worker that ends a run, for a sleeping caller
	once    sync.Once
	live    atomic.Int32 // workers running (tests)
	sh      shared       // runShared's task, held here so that a run allocates nothing
	wk      *waker       // with Options.FutexWake, where idle workers sleep
}

// A worker asleep on its channel is woken by Go's scheduler, which lets
// one thread at a time look for work, so sixteen sleeping workers wake one
// after another: on the GPU machine a four-expert share after 1 ms idle
// took ~180 µs longer than back to back (docs/benchmarks.md run 27). With
// Options.FutexWake (Linux) an idle worker that has spun for spinFor
// sleeps in a futex instead, still holding its thread, and the caller
// wakes them all in one call: the kernel makes them runnable at once.
type waker struct {
	epoch    atomic.Uint32 // bumped by every wake; the futex word
	sleepers atomic.Int32  // workers in or entering futexWait
	closed   atomic.Bool
}

// futexNap bounds a futex sleep, so that a wake lost to a bug would cost
// a worker a nap, never a hang.
const futexNap = 10 * time.Millisecond

// sleep returns once ready holds or the pool is closed. The epoch is read
// before ready is looked at, so a wake between the look and the futex call
// changes the word the kernel compares and the call returns at once.
func (w *waker) sleep(ready func() bool) {
	for {
		e := w.epoch.Load()
		if ready() || w.closed.Load() {
			return
		}
		w.sleepers.Add(1)
		if !ready() && !w.closed.Load() {
			futexWait(&w.epoch, e, futexNap)
		}
		w.sleepers.Add(-1)
	}
}

// wake wakes the sleeping workers after the caller has sent their spans;
// a system call only when one may be asleep.
func (w *waker) wake() {
	if w == nil {
		return
	}
	w.epoch.Add(1)
	if w.sleepers.Load() > 0 {
		futexWake(&w.epoch)
	}
}

// spinFor is how long an idle worker or a waiting caller polls before it
// sleeps.
const spinFor = 100 * time.Microsecond

// newPool starts workers goroutines; poll is Options.Poll, futex
// Options.FutexWake (where the system has one).
func newPool(workers int, poll time.Duration, futex bool) *pool {
	p := &pool{work: make([]chan span, workers), done: make(chan struct{}, 1)}
	if futex && futexOK {
		p.wk = &waker{}
	}
	for i := range p.work {
		ch := make(chan span, 1)
		p.work[i] = ch
		p.live.Add(1)
		go worker(ch, &p.pending, p.done, &p.live, poll, p.wk)
	}
	return p
}

func worker(ch chan span, pending *atomic.Int32, done chan struct{}, live *atomic.Int32, poll time.Duration, wk *waker) {
	defer live.Add(-1)
	for {
		s, ok := recvSpin(ch, poll, wk)
		if !ok {
			return
		}
		if s.t == nil { // a prime: poll for the op it announces
			pollUntil(func() bool { return len(ch) > 0 }, time.Duration(s.hi))
			continue
		}
		s.t.do(s.part, s.lo, s.hi)
		s = span{} // drop the task so an idle worker keeps nothing alive
		if pending.Add(-1) == 0 {
			select {
			case done <- struct{}{}:
			default: // a token is there already: the caller checks pending
			}
		}
	}
}

// recvSpin receives from ch, polling for up to spinFor before it blocks,
// or, with poll above 0, for up to poll without yielding; with a waker it
// then sleeps in the futex until ch has a span (or the pool closes) rather
// than on ch. (Only the worker receives from ch, so what it saw there
// stays.)
func recvSpin(ch chan span, poll time.Duration, wk *waker) (span, bool) {
	ready := func() bool { return len(ch) > 0 }
	var got bool
	if poll > 0 {
		got = pollUntil(ready, poll)
	} else {
		got = spinUntil(ready)
	}
	if !got && wk != nil {
		wk.sleep(ready)
	}
	s, ok := <-ch
	return s, ok
}

// pollUntil polls ready without yielding until it holds (true) or d has
// passed (false).
func pollUntil(ready func() bool, d time.Duration) bool {
	t0 := time.Now()
	for i := 0; !ready(); i++ {
		if i&63 == 63 && time.Since(t0) > d {
			return false
		}
	}
	return true
}

// spinUntil polls ready, yielding to other goroutines between looks, until
// it holds (true) or spinFor has passed (false).
func spinUntil(ready func() bool) bool {
	var t0 time.Time
	for i := 0; !ready(); i++ {
		if i&15 != 15 {
			continue
		}
		if t0.IsZero() {
			t0 = time.Now()
		} else if time.Since(t0) > spinFor {
			return false
		}
		runtime.Gosched()
	}
	return true
}

// parts is the number of goroutines an op can use (workers + caller).
func (p *pool) parts() int { return len(p.work) + 1 }

// run splits [0, n) into chunks of the given size (the last may be short),
// one per part, and returns when every part is done.
func (p *pool) run(t task, n, chunk int) {
	if len(p.work) == 0 { // one thread, or after Close
		t.do(0, 0, n)
		return
	}
	k := (n + chunk - 1) / chunk
	if k > p.parts() {
		panic("cpu: pool.run with more chunks than parts")
	}
	p.pending.Store(int32(k - 1))
	for i := 1; i < k; i++ {
		p.work[i-1] <- span{t: t, part: i, lo: i * chunk, hi: min((i+1)*chunk, n)}
	}
	p.wk.wake()
	t.do(0, 0, min(chunk, n))
	p.wait()
}

// start hands t to every worker (parts 1 to the workers' count; the
// caller takes no part, though it may join later as part 0, as
// WaitExperts does) and returns at once; wait waits for them. The
// caller must not start another run before wait returns.
func (p *pool) start(t task) {
	p.pending.Store(int32(len(p.work)))
	for i, ch := range p.work {
		ch <- span{t: t, part: i + 1}
	}
	p.wk.wake()
}

// runShared computes [0, n) in chunks of the given size (the last may be
// short) that the parts take from one counter until none is left, and
// returns when every part is done. Unlike run's one chunk a part, a part
// that loses its core for a while (to the GPU's host thread, the driver's,
// another process) leaves its chunks to the others instead of holding up
// the op: with a busy process beside it on dev-2c a K=10 decode step ran
// 3-10% faster so (docs/benchmarks.md, "Matvec rows dealt from a
// counter"), and on the GPU machine the steps with a CPU share beside the
// link spread from 1.44 ms (p10) to 1.9 (p90) where the link's alone
// spread by 0.1. Which part computes a chunk does not change its bits: a
// task's items are independent.
func (p *pool) runShared(t task, n, chunk int) {
	if n <= 0 {
		return // run's count of parts would be 0, which it cannot wait for
	}
	k := (n + chunk - 1) / chunk
	sh := &p.sh
	sh.t, sh.n, sh.chunk = t, n, chunk
	sh.next.Store(0)
	p.run(sh, min(k, p.parts()), 1)
	sh.t = nil
}

// shared is runShared's task: each part's do takes chunks of t's items
// until they are gone (its own lo and hi only name the part).
type shared struct {
	t        task
	n, chunk int
	next     atomic.Int64
}

func (s *shared) do(part, _, _ int) {
	for {
		lo := int(s.next.Add(int64(s.chunk))) - s.chunk
		if lo >= s.n {
			return
		}
		s.t.do(part, lo, min(lo+s.chunk, s.n))
	}
}

// sharedChunk is the chunk of rows runShared deals a matvec over n parts:
// about chunksPerPart a part, a multiple of 4 rows (kernels that block
// rows stay aligned).
func sharedChunk(rows, n int) int {
	c := (rows + n*chunksPerPart - 1) / (n * chunksPerPart)
	return (c + 3) &^ 3
}

// chunksPerPart: enough that a part slowed for a quarter of an op costs
// it little, few enough that a chunk's counter update is nothing beside
// its rows (a chunk of a 397B expert projection over 16 parts is ~37 KB).
const chunksPerPart = 4

// prime has every idle worker poll, without yielding, for up to d or
// until its next span comes: the caller expects an op within d (a CPU
// share whose ids the GPU is about to send back) and would otherwise pay
// each sleeping worker's wake when it comes. A worker that has a span
// waiting already gets no prime. The primed workers hold their Ps while
// they poll, so the caller leaves Ps for its other goroutines, as with
// Options.Poll.
func (p *pool) prime(d time.Duration) {
	for _, ch := range p.work {
		select {
		case ch <- span{hi: int(d)}:
		default:
		}
	}
	p.wk.wake()
}

// wait returns when the run's workers are done: it polls, then sleeps on
// done. A token left by an earlier run only makes it look again.
func (p *pool) wait() {
	if spinUntil(func() bool { return p.pending.Load() == 0 }) {
		return
	}
	for p.pending.Load() != 0 {
		<-p.done
	}
}

func (p *pool) close() {
	p.once.Do(func() {
		for _, ch := range p.work {
			close(ch)
		}
		p.work = nil
		if p.wk != nil {
			p.wk.closed.Store(true)
			p.wk.wake()
		}
	})
}

// attachPool gives be a pool of threads−1 workers, stopped by Close or,
// failing that, when be is collected.
func (be *Backend) attachPool(poll time.Duration, futex bool) {
	p := newPool(be.threads-1, poll, futex)
	be.pool = p
	runtime.AddCleanup(be, func(p *pool) { p.close() }, p)
}
