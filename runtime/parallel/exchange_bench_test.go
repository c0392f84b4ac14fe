package parallel_test

import (
	"os"
	"strconv"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cuda"
	"github.com/fmoe/fmoe/runtime/parallel"
)

// BenchmarkExchange times one MoE layer's exchange as the model makes it:
// Broadcast of H float32 (the normed hidden state; H = FMOE_BENCH_HIDDEN,
// default 4096, the 397B's) and AllReduce of the partial sums, then a read
// of one value from every rank so the time includes completion. It runs on
// FMOE_BENCH_GPUS CUDA devices (default 2) through NCCL, the figure
// docs/scaling.md's per-token costs wait for; without them it is skipped.
func BenchmarkExchange(b *testing.B) {
	n, H := envInt("FMOE_BENCH_GPUS", 2), envInt("FMOE_BENCH_HIDDEN", 4096)
	var bes []backend.Backend
	for d := range n {
		be, err := cuda.NewWithOptions(cuda.Options{Device: d})
		if err != nil {
			b.Skipf("needs %d CUDA devices: device %d: %v", n, d, err)
		}
		b.Cleanup(func() { be.Close() })
		bes = append(bes, be)
	}
	coll, err := parallel.NewNCCL(bes)
	if err != nil {
		b.Fatal(err)
	}
	defer coll.Close()
	bufs := make([]backend.Buffer, n)
	for d, be := range bes {
		if bufs[d], err = be.Alloc(H); err != nil {
			b.Fatal(err)
		}
	}
	one := make([]float32, 1)
	exchange := func() {
		if err := coll.Broadcast(bufs, 0); err != nil {
			b.Fatal(err)
		}
		if err := coll.AllReduce(bufs); err != nil {
			b.Fatal(err)
		}
		for d, be := range bes {
			v, _ := be.View(bufs[d], 0, 1)
			if err := be.Read(one, v); err != nil {
				b.Fatal(err)
			}
		}
	}
	for range 20 {
		exchange() // NCCL sets up its channels on first use
	}
	b.ResetTimer()
	for range b.N {
		exchange()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "us/layer")
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
