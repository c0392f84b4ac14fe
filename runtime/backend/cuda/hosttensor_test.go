//go:build linux && cgo

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// hostWeight places w in fresh pinned host memory (tensorInHost) and
// returns the tensor and that memory, the backend's to free at Close.
func hostWeight(tb testing.TB, be *Backend, w backend.Weight) (*tensor, []byte) {
	tb.Helper()
	_, _, size := layout(w)
	mem, err := be.HostAlloc(size)
	if err != nil {
		tb.Fatal(err)
	}
	t, err := be.tensorInHost(w, mem)
	if err != nil {
		tb.Fatal(err)
	}
	return t, mem
}

// TestMatMulFromHost: a weight the kernels read straight from pinned host
// memory (tensorInHost, zero-copy over the link) computes the very bits of
// the same weight registered on the device, in MatMul and as a MatVecBatch
// job beside a device-resident one, on the integer tensor-core matvec and on
// matvec.h (path off): the expert's and the router's shapes, Q4 and Q8. And
// memory that is not pinned is refused with the size it needed.
func TestMatMulFromHost(t *testing.T) {
	for _, wpsm := range []int{mmvOptIn, -1} {
		be := newMMV(t, wpsm)
		for _, c := range []struct {
			f       backend.Format
			R, C, G int
		}{
			{backend.Q4, 1024, 4096, 64}, // an expert's gate/up
			{backend.Q4, 4096, 1024, 64}, // its down
			{backend.Q8, 513, 4096, 64},  // a router with the shared expert's gate
			{backend.Q4, 37, 512, 128},   // a row tail
		} {
			name := fmt.Sprintf("wpsm=%d/%v/%dx%d/g%d", wpsm, c.f, c.R, c.C, c.G)
			rng := rand.New(rand.NewPCG(uint64(c.R), uint64(c.C)))
			w, _ := backendtest.RandomWeight(rng, c.f, c.R, c.C, c.G)
			x := make([]float32, c.C)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			dev, err := be.Register(w)
			if err != nil {
				t.Fatal(err)
			}
			host, _ := hostWeight(t, be, w)
			want := runTensor(t, be, dev, x, 1, c.R)
			got := runTensor(t, be, host, x, 1, c.R)
			job := batchPair(t, be, dev, host, x, c.R)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) || math.Float32bits(job[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s: row %d: from host memory %v, as a batch job %v, registered %v", name, i, got[i], job[i], want[i])
				}
			}
		}
		w := fastQ4(64, 512, 1)
		_, _, size := layout(w)
		if _, err := be.tensorInHost(w, make([]byte, size)); err == nil || !strings.Contains(err.Error(), fmt.Sprint(size)) {
			t.Errorf("wpsm=%d: a weight in unpinned memory: %v, want a refusal naming %d bytes", wpsm, err, size)
		}
		if err := be.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkMMVFromHost: what an expert the GPU tier lacks costs computed
// straight from pinned host memory (zero-copy: the matvec's loads cross the
// link) against copied in first (Bind's one DMA from the same pinned bytes,
// then the matvec from device memory, then Release), and the matvec from
// device memory alone, on the 397B's expert shapes: one gate or up, K=4 and
// K=10 batches of gate/up (2K jobs) and of down (K jobs), each job its own
// expert; and for the batches, one expert of the batch from the host (its
// gate and up jobs, or its down job) read zero-copy or copied in, the rest
// from device memory: a tiered layer with one GPU-tier miss. µs an op by
// wall clock over FMOE_BENCH_HOST_ITERS ops (default 50) after a warm-up,
// best of three, and GB/s of weight bytes; FMOE_BENCH_MMV_SHAPE narrows the
// shapes. Decides whether a GPU-tier miss is better read than copied
// (docs/gpu-decode.md, session 25).
func BenchmarkMMVFromHost(b *testing.B) {
	be := newMMV(b, mmvOptIn)
	defer be.Close()
	iters := 50
	if v, err := strconv.Atoi(os.Getenv("FMOE_BENCH_HOST_ITERS")); err == nil && v > 0 {
		iters = v
	}
	for _, s := range []struct {
		name string
		R, C int
		jobs int
	}{
		{"expert gate/up 1024x4096", 1024, 4096, 1},
		{"K=4 gate/up 8x 1024x4096", 1024, 4096, 8},
		{"K=4 down 4x 4096x1024", 4096, 1024, 4},
		{"K=10 gate/up 20x 1024x4096", 1024, 4096, 20},
		{"K=10 down 10x 4096x1024", 4096, 1024, 10},
	} {
		if !strings.Contains(s.name, os.Getenv("FMOE_BENCH_MMV_SHAPE")) {
			continue
		}
		// Distinct weights a job, twice over, so that no op finds its
		// weights in L2 from the op before.
		n := 2 * s.jobs
		ws := make([]backend.Weight, n)
		hosts := make([]*tensor, n)
		devs := make([]backend.Tensor, n)
		binds := make([]backend.Weight, n) // the host copies' bytes, for Bind
		for i := range ws {
			ws[i] = fastQ4(s.R, s.C, uint64(i+1))
			var span []byte
			hosts[i], span = hostWeight(b, be, ws[i])
			so, bo, _ := layout(ws[i])
			binds[i] = ws[i]
			binds[i].Data, binds[i].Scales, binds[i].Biases = span[:len(ws[i].Data)], span[so:so+len(ws[i].Scales)], span[bo:bo+len(ws[i].Biases)]
			d, err := be.Register(ws[i])
			if err != nil {
				b.Fatal(err)
			}
			devs[i] = d
		}
		xs, ys := make([]backend.Buffer, s.jobs), make([]backend.Buffer, s.jobs)
		for j := range xs {
			xs[j], _ = be.Alloc(s.C)
			ys[j], _ = be.Alloc(s.R)
			if err := be.Write(xs[j], make([]float32, s.C)); err != nil {
				b.Fatal(err)
			}
		}
		pick := func(op int, from func(i int) backend.Tensor) []backend.Tensor {
			ts := make([]backend.Tensor, s.jobs)
			for j := range ts {
				ts[j] = from((op%2)*s.jobs + j)
			}
			return ts
		}
		run := func(ts []backend.Tensor) error {
			if s.jobs == 1 {
				return be.MatMul(ys[0], ts[0], xs[0], 1)
			}
			return be.MatVecBatch(ys, ts, xs)
		}
		// zeroCopy runs an op whose first n jobs read their weights from
		// host memory and the rest from device memory.
		zeroCopy := func(op, n int) error {
			return run(pick(op, func(i int) backend.Tensor {
				if i%s.jobs < n {
					return hosts[i]
				}
				return devs[i]
			}))
		}
		// copiedIn runs an op whose first n jobs are bound from the host
		// copies (one DMA each, as the host tier binds) and the rest read
		// from device memory, then releases the bound ones.
		copiedIn := func(op, n int) error {
			ts := pick(op, func(i int) backend.Tensor { return devs[i] })
			for j := 0; j < n; j++ {
				t, err := be.Bind(binds[(op%2)*s.jobs+j])
				if err != nil {
					return err
				}
				ts[j] = t
			}
			err := run(ts)
			for _, t := range ts[:n] {
				if rerr := be.Release(t); err == nil {
					err = rerr
				}
			}
			return err
		}
		variants := []struct {
			name string
			op   func(op int) error
		}{
			{"device memory", func(op int) error { return zeroCopy(op, 0) }},
			{"host memory (zero-copy)", func(op int) error { return zeroCopy(op, s.jobs) }},
			{"copied in (Bind, DMA)", func(op int) error { return copiedIn(op, s.jobs) }},
		}
		if s.jobs > 2 {
			// A tiered layer's usual case: one expert of the batch missing
			// from the GPU tier (its gate and up, or its down: the first
			// job or two), read from the host tier or copied in first.
			miss := 2
			if strings.Contains(s.name, "down") {
				miss = 1
			}
			variants = append(variants, []struct {
				name string
				op   func(op int) error
			}{
				{fmt.Sprintf("%d job(s) zero-copy", miss), func(op int) error { return zeroCopy(op, miss) }},
				{fmt.Sprintf("%d job(s) copied in", miss), func(op int) error { return copiedIn(op, miss) }},
			}...)
		}
		bytes := float64(s.jobs * weightBytes(ws[0]))
		for _, v := range variants {
			best := math.Inf(1)
			for r := 0; r < 4; r++ { // the first a warm-up
				t0 := time.Now()
				for op := 0; op < iters; op++ {
					if err := v.op(op); err != nil {
						b.Fatalf("%s, %s: %v", s.name, v.name, err)
					}
				}
				if err := be.Sync(); err != nil {
					b.Fatal(err)
				}
				if d := time.Since(t0).Seconds() / float64(iters); r > 0 {
					best = min(best, d)
				}
			}
			fmt.Printf("mmv-host %-28s %-24s %9.1f us %7.1f GB/s\n", s.name, v.name, best*1e6, bytes/best/1e9)
		}
	}
}
