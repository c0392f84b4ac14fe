package cpu

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkExpertsAfterIdle: a CPU share's four experts (benchExperts.batch,
// as computeApart computes them) as the GPU machine runs them, once a layer
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
			name := fmt.Sprintf("threads=%d/gap=%v", be.threads, c.gap)
			if c.primed > 0 {
				name += fmt.Sprintf("/primed=%v", c.primed)
			}
			b.Run(name, func(b *testing.B) {
				var busy time.Duration
				ids := make([]int, 4)
				next := 0
				for range b.N {
					time.Sleep(c.gap - c.primed)
					if c.primed > 0 {
						be.Prime(2 * time.Millisecond)
						time.Sleep(c.primed)
					}
					t0 := time.Now()
					for i := range ids {
						ids[i] = next % len(ex.w)
						next++
					}
					if err := ex.batch(ids); err != nil {
						b.Fatal(err)
					}
					busy += time.Since(t0)
				}
				b.ReportMetric(float64(busy.Microseconds())/float64(b.N), "µs/share")
			})
		}
		be.Close()
	}
}
