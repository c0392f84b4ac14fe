package cpu

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkExpertsAfterIdle: a CPU share's one, two or four experts
// (benchExperts.batch, as computeApart computes them; task, as one task of
// the pool, FMOE_CPU_SHARE=task) as the GPU machine runs them, once a layer
// after ~1 ms idle (gap=1ms: the pool's threads asleep), against the same
// back to back (gap=0s, as BenchmarkExperts runs); µs a share, the idle
// time excluded. On the GPU host the share took ~0.96 ms in place against
// 0.60 back to back (docs/benchmarks.md run 26): this separates what the
// idle costs (on dev-2c a third more with two threads, nothing with one)
// from what the link beside it does; primed: Prime 300 µs before the
// share, as a layer primes its CPU share's threads when it asks for its
// routing (model.Options.MissPrime). FMOE_BENCH_THREADS and
// FMOE_BENCH_POLL as in BenchmarkExperts.
func BenchmarkExpertsAfterIdle(b *testing.B) {
	for _, th := range benchThreads(b) {
		be := New(benchOptions(b, th))
		ex := newBenchExperts(b, be, 80)
		for _, c := range []struct {
			gap, primed time.Duration
		}{{0, 0}, {time.Millisecond, 0}, {time.Millisecond, 300 * time.Microsecond}} {
			for _, n := range []int{1, 2, 4} {
				for _, mode := range []string{"ops", "task"} {
					name := fmt.Sprintf("threads=%d/gap=%v", be.threads, c.gap)
					if c.primed > 0 {
						name += fmt.Sprintf("/primed=%v", c.primed)
					}
					b.Run(fmt.Sprintf("%s/experts=%d/%s", name, n, mode), func(b *testing.B) {
						afterIdle(b, ex, c.gap, c.primed, n, mode)
					})
				}
			}
		}
		be.Close()
	}
}

// afterIdle times n experts a share after gap idle (primed for the last
// primed of it) as the three ops (ops, the caller taking part) or as one
// task of the workers (task: StartExperts, the caller only waiting).
func afterIdle(b *testing.B, ex *benchExperts, gap, primed time.Duration, n int, mode string) {
	be := ex.be
	var busy time.Duration
	ids := make([]int, n)
	next := 0
	for range b.N {
		time.Sleep(gap - primed)
		if primed > 0 {
			be.Prime(2 * time.Millisecond)
			time.Sleep(primed)
		}
		t0 := time.Now()
		for i := range ids {
			ids[i] = next % len(ex.w)
			next++
		}
		var err error
		if mode == "task" {
			err = ex.task(ids)
		} else {
			err = ex.batch(ids)
		}
		if err != nil {
			b.Fatal(err)
		}
		busy += time.Since(t0)
	}
	b.ReportMetric(float64(busy.Microseconds())/float64(b.N), "µs/share")
}
