package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
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
type pool struct {
	work []chan span // one per worker; the caller is part 0
	wg   sync.WaitGroup
	once sync.Once
	live atomic.Int32 // workers running (tests)
}

func newPool(workers int) *pool {
	p := &pool{work: make([]chan span, workers)}
	for i := range p.work {
		ch := make(chan span, 1)
		p.work[i] = ch
		p.live.Add(1)
		go worker(ch, &p.wg, &p.live)
	}
	return p
}

func worker(ch chan span, wg *sync.WaitGroup, live *atomic.Int32) {
	defer live.Add(-1)
	for s := range ch {
		s.t.do(s.part, s.lo, s.hi)
		s = span{} // drop the task so an idle worker keeps nothing alive
		wg.Done()
	}
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
	p.wg.Add(k - 1)
	for i := 1; i < k; i++ {
		p.work[i-1] <- span{t: t, part: i, lo: i * chunk, hi: min((i+1)*chunk, n)}
	}
	t.do(0, 0, min(chunk, n))
	p.wg.Wait()
}

func (p *pool) close() {
	p.once.Do(func() {
		for _, ch := range p.work {
			close(ch)
		}
		p.work = nil
	})
}

// attachPool gives be a pool of threads−1 workers, stopped by Close or,
// failing that, when be is collected.
func (be *Backend) attachPool() {
	p := newPool(be.threads - 1)
	be.pool = p
	runtime.AddCleanup(be, func(p *pool) { p.close() }, p)
}
