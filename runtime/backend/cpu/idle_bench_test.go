package cpu

import (
	"fmt"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
)

// BenchmarkExpertsAfterIdle: a CPU share's four experts (computeApart's
// gate and up in one batch, SwiGLU, the downs in one) as the GPU machine
// runs them, once a layer after ~1 ms idle (gap=1ms: the pool's threads
// asleep), against the same back to back (gap=0s, as BenchmarkExperts
// runs); µs a share, the idle time excluded. On the GPU host the share
// took ~0.96 ms in place against 0.60 back to back (docs/benchmarks.md run
// 26): this separates what the idle costs (on dev-2c a third more with two
// threads, nothing with one) from what the link beside it does.
// FMOE_BENCH_THREADS and FMOE_BENCH_POLL as in BenchmarkExperts.
func BenchmarkExpertsAfterIdle(b *testing.B) {
	for _, th := range benchThreads(b) {
		be := New(benchOptions(b, th))
		ex := newBenchExperts(b, be, 80)
		for _, gap := range []time.Duration{0, time.Millisecond} {
			b.Run(fmt.Sprintf("threads=%d/gap=%v", be.threads, gap), func(b *testing.B) {
				var busy time.Duration
				ids := make([]int, 4)
				next := 0
				for range b.N {
					time.Sleep(gap)
					t0 := time.Now()
					for i := range ids {
						ids[i] = next % len(ex.w)
						next++
					}
					ex.share(b, ids)
					busy += time.Since(t0)
				}
				b.ReportMetric(float64(busy.Microseconds())/float64(b.N), "µs/share")
			})
		}
		be.Close()
	}
}

// share is computeApart's work on ids: gate and up in one batch, SwiGLU,
// the downs in one.
func (ex *benchExperts) share(b *testing.B, ids []int) {
	be := ex.be
	const H, I = 4096, 1024
	var ys, xs []backend.Buffer
	var ws []backend.Tensor
	for i, id := range ids {
		g, _ := be.View(ex.g, i*I, I)
		u, _ := be.View(ex.u, i*I, I)
		ys, xs, ws = append(ys, g, u), append(xs, ex.x, ex.x), append(ws, ex.w[id][0], ex.w[id][1])
	}
	if err := be.MatVecBatch(ys, ws, xs); err != nil {
		b.Fatal(err)
	}
	var os, gs []backend.Buffer
	var ds []backend.Tensor
	for i, id := range ids {
		if err := be.SwiGLU(ys[2*i], ys[2*i], ys[2*i+1]); err != nil {
			b.Fatal(err)
		}
		o, _ := be.View(ex.o, i*H, H)
		os, gs, ds = append(os, o), append(gs, ys[2*i]), append(ds, ex.w[id][2])
	}
	if err := be.MatVecBatch(os, ds, gs); err != nil {
		b.Fatal(err)
	}
}
