package cpu

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/trace"
	"sync/atomic"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
)

// A GPU's CPU share (runtime/model, fmoe-run --cpu-experts) as one task
// of the pool's workers: fmoe-run's share since run 30 (FMOE_CPU_SHARE=ops
// is the old way).
// As three ops run by a goroutine of the share's own (MatVecBatch of the
// gates and ups, SwiGLU, MatVecBatch of the downs), a Go execution trace
// of the GPU machine (docs/benchmarks.md run 29) has a lone K=4 expert
// cost the CPUs 385 µs where its bytes take ~110: the goroutine waits
// 18-41 µs for a thread, each op's workers up to 60-160 µs for a P, the
// SwiGLU between the two matvecs 20-95 µs. Here the caller hands the
// whole share to the workers and goes on (StartExperts); each worker
// takes an expert's rows of gate and up together from one counter and
// applies SwiGLU to them at once, the worker that completes the last of
// them prepares the downs' inputs, and the workers then take the downs'
// rows from a second counter; WaitExperts waits for the last. No
// goroutine is started and no op dispatched between the phases. Every row
// is the kernel's row and every SwiGLU value the op's, so the outputs are
// MatVecBatch's, SwiGLU's and MatVecBatch's, bit for bit
// (TestStartExperts).

// expertsTask is StartExperts' pool task and its state, held by the
// Backend so that a share allocates nothing.
type expertsTask struct {
	gu, down mvBatch
	g, u     [][]float32 // expert i's gate and up outputs; SwiGLU goes to g
	I, pad   int         // rows of a gate (and of an up); I rounded up to 4
	nA, nB   int         // pair rows dealt (experts × pad), down rows dealt
	cA, cB   int         // their chunks
	be       *Backend
	next     atomic.Int64 // phase A's counter
	doneA    atomic.Int64 // phase A's rows done
	nextB    atomic.Int64
	ready    atomic.Bool  // the downs' inputs are prepared
	end      atomic.Int64 // when the last part ended (ns since start)
	start    time.Time
	running  bool
}

// StartExperts starts n experts' SwiGLU MLPs on the pool's workers: for
// expert i, gus[2i] = gu[2i]·x (gate), gus[2i+1] = gu[2i+1]·x (up),
// gus[2i] = silu(gus[2i])·gus[2i+1], outs[i] = down[i]·gus[2i]. It returns
// once the work is handed over; until WaitExperts returns, the caller must
// not use the backend, the buffers or the tensors. With no workers (one
// thread) it computes the share before it returns.
func (be *Backend) StartExperts(gus []backend.Buffer, gu []backend.Tensor, x backend.Buffer, outs []backend.Buffer, down []backend.Tensor) error {
	t := &be.share
	if t.running {
		return errors.New("cpu: StartExperts while a share runs: WaitExperts first")
	}
	if err := t.bind(be, gus, gu, x, outs, down); err != nil {
		t.clear()
		return err
	}
	t.start, t.be = time.Now(), be
	t.next.Store(0)
	t.doneA.Store(0)
	t.nextB.Store(0)
	t.ready.Store(false)
	t.end.Store(0)
	t.running = true
	workers := 0
	if be.pool != nil {
		workers = len(be.pool.work)
	}
	t.cA, t.cB = sharedChunk(t.nA, max(workers, 1)), sharedChunk(t.nB, max(workers, 1))
	if workers == 0 {
		t.do(0, 0, 0)
		return nil
	}
	be.pool.start(t)
	return nil
}

// WaitExperts waits for the share StartExperts started and returns how
// long it took, from the start to the end of its last part. With the
// futex wake the caller first takes part in what is left (part 0, whose
// scratch the workers never use): it would only wait, and on few cores
// the share otherwise runs on a thread fewer than the ops did (dev-2c, two
// threads, two experts: 567 → 430 µs back to back, 661 → 603 primed,
// 676 → 653 after 1 ms idle). Not on the channel wake: a worker it wakes
// can sit in the caller's own run queue while the caller computes (the
// same share after 1 ms idle 672 → 1,667 µs). Which part computes a row
// does not change its bits.
func (be *Backend) WaitExperts() (time.Duration, error) {
	t := &be.share
	if !t.running {
		return 0, errors.New("cpu: WaitExperts without a share started")
	}
	if p := be.pool; p != nil && len(p.work) > 0 {
		if p.wk != nil {
			t.join()
		}
		p.wait()
	}
	took := time.Duration(t.end.Load())
	t.clear()
	return took, nil
}

// bind checks the share's shapes and lays out its jobs: gate and up of
// expert i at gu.jobs[2i], [2i+1] (their x prepared once), down i at
// down.jobs[i] (prepared once SwiGLU has run, by the part that ends it).
func (t *expertsTask) bind(be *Backend, gus []backend.Buffer, gu []backend.Tensor, x backend.Buffer, outs []backend.Buffer, down []backend.Tensor) error {
	n := len(down)
	if n == 0 || len(gu) != 2*n || len(gus) != 2*n || len(outs) != n {
		return fmt.Errorf("cpu: a share of %d downs, %d gates and ups, %d of their outputs and %d outputs: want 2n, 2n and n for n > 0 downs", n, len(gu), len(gus), len(outs))
	}
	t.gu.jobs, t.down.jobs, t.g, t.u = t.gu.jobs[:0], t.down.jobs[:0], t.g[:0], t.u[:0]
	for i := range 2 * n {
		jb, err := be.mvJobOf(gu[i], gus[i], x, fmt.Sprintf("share gate/up %d", i))
		if err != nil {
			return err
		}
		if i == 0 {
			t.I = jb.w.Rows
		} else if jb.w.Rows != t.I {
			return fmt.Errorf("cpu: share gate/up %d has %d rows, gate/up 0 %d: want one intermediate size", i, jb.w.Rows, t.I)
		}
		t.gu.jobs = append(t.gu.jobs, jb)
		if i%2 == 0 {
			t.g = append(t.g, jb.y)
		} else {
			t.u = append(t.u, jb.y)
		}
	}
	off := 0
	for i := range n {
		jb, err := be.mvJobOf(down[i], outs[i], gus[2*i], fmt.Sprintf("share down %d", i))
		if err != nil {
			return err
		}
		if jb.w.Cols != t.I {
			return fmt.Errorf("cpu: share down %d has %d columns: want the gates' and ups' %d rows", i, jb.w.Cols, t.I)
		}
		jb.off = off
		t.down.jobs = append(t.down.jobs, jb)
		off += (jb.w.Rows + 3) &^ 3
	}
	t.pad = (t.I + 3) &^ 3
	t.nA, t.nB = n*t.pad, off
	t.gu.prepare(be)
	return nil
}

// do is a worker's part: in a Go execution trace a share.task region
// (scripts/go-trace-share.py's parts).
func (t *expertsTask) do(part, _, _ int) { t.traced(part, "share.task") }

// join is WaitExperts' part 0: in a trace a share.join region (not one of
// the script's parts: it starts at the wait, not at the hand-over).
func (t *expertsTask) join() { t.traced(0, "share.join") }

// traced is work as part part, marked as region in a Go execution trace.
func (t *expertsTask) traced(part int, region string) {
	if trace.IsEnabled() {
		defer trace.StartRegion(context.Background(), region).End()
	}
	t.work(part)
}

// work is a part's work: pair rows of gates and ups with their SwiGLU
// until none are left, then, once every one is done and the downs' inputs
// are prepared, rows of the downs until none are left. Only a part that
// computed rows moves the share's end: a caller joining after the workers
// finished would otherwise stretch the share's time to its own arrival,
// which the GPU's part decides, and --cpu-experts auto, reading the
// share's time as the CPUs' cost, would shrink the share at every layer
// (peer run 16: the CPUs' expert read as 0.643 ms against run 14's 0.162).
func (t *expertsTask) work(part int) {
	did := false
	for {
		lo := int(t.next.Add(int64(t.cA))) - t.cA
		if lo >= t.nA {
			break
		}
		hi := min(lo+t.cA, t.nA)
		t.pairRows(part, lo, hi)
		did = true
		if t.doneA.Add(int64(hi-lo)) == int64(t.nA) {
			t.down.prepare(t.be)
			t.ready.Store(true)
		}
	}
	// The parts still at work on phase A hold a chunk each: a short wait.
	for i := 0; !t.ready.Load(); i++ {
		if i&63 == 63 {
			runtime.Gosched()
		}
	}
	for {
		lo := int(t.nextB.Add(int64(t.cB))) - t.cB
		if lo >= t.nB {
			break
		}
		t.down.do(part, lo, min(lo+t.cB, t.nB))
		did = true
	}
	if !did {
		return
	}
	e := int64(time.Since(t.start))
	for {
		old := t.end.Load()
		if e <= old || t.end.CompareAndSwap(old, e) {
			break
		}
	}
}

// pairRows computes the pair rows [lo, hi): expert i's rows r of gate and
// up for the pair rows i·pad + r, then their SwiGLU.
func (t *expertsTask) pairRows(part, lo, hi int) {
	for i := lo / t.pad; i*t.pad < hi; i++ {
		r0, r1 := max(lo-i*t.pad, 0), min(hi-i*t.pad, t.I)
		if r0 >= r1 {
			continue
		}
		t.gu.rowsOf(part, &t.gu.jobs[2*i], r0, r1)
		t.gu.rowsOf(part, &t.gu.jobs[2*i+1], r0, r1)
		g, u := t.g[i][r0:r1], t.u[i][r0:r1]
		for k, v := range g {
			g[k] = silu(v) * u[k]
		}
	}
}

// clear keeps no reference to the caller's weights or buffers.
func (t *expertsTask) clear() {
	t.gu.clear()
	t.down.clear()
	clear(t.g)
	clear(t.u)
	t.g, t.u = t.g[:0], t.u[:0]
	t.be, t.running = nil, false
}
