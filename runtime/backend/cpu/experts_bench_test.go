package cpu

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// BenchmarkExperts is a decode layer's K routed experts of the 397B's
// shape (gate and up [1024, 4096], down [4096, 1024], 4-bit group 64:
// 7,077,888 bytes) computed on the CPU from memory, as a miss rank does
// beside the GPU (issue 13's row 2): "batch" with MatVecBatch (one
// dispatch for the K gate and up jobs, one for the downs), "pair" an
// expert at a time with its gate and up in one MatVecBatch (the model's
// expertOps), "each" with one MatMul a projection, beside "read", a read-only pass over the same bytes
// on the same threads (the ceiling). The experts cycle through ≥ 512 MiB,
// so they come from memory, not cache. FMOE_BENCH_THREADS: thread counts
// (comma-separated; default one a core); FMOE_BENCH_POLL: Options.Poll (a
// duration). FMOE_BENCH_PAGES (Linux): "4k" or
// "huge" lays the experts in a mapping of that page size instead of the Go
// heap (benchArena).
func BenchmarkExperts(b *testing.B) {
	for _, th := range benchThreads(b) {
		be := New(benchOptions(b, th))
		ex := newBenchExperts(b, be, 80)
		for _, K := range []int{4, 10} {
			for _, mode := range []string{"batch", "pair", "each", "read"} {
				// The kernels in the name ("avx512" etc.): issue 12's run 17 measured
				// 35-40 GB/s on the GPU host's 16 vCPUs, below this kernel's per-core rate on
				// dev-2c, and could not say whether that host took the AVX-512 kernels.
				b.Run(fmt.Sprintf("threads=%d/K=%d/%s/%s", be.threads, K, mode, be.kernels()), func(b *testing.B) {
					ex.run(b, K, mode)
				})
			}
		}
		be.Close()
	}
}

// benchOptions is a benchmark backend's options for th threads, with
// FMOE_BENCH_POLL (a duration) as Options.Poll.
func benchOptions(b *testing.B, th int) Options {
	o := Options{Threads: th}
	if v := os.Getenv("FMOE_BENCH_POLL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			b.Fatalf("FMOE_BENCH_POLL=%q: want a duration such as 2ms", v)
		}
		o.Poll = d
	}
	// FMOE_BENCH_WAKE=futex: Options.FutexWake.
	switch v := os.Getenv("FMOE_BENCH_WAKE"); v {
	case "":
	case "futex":
		o.FutexWake = true
	default:
		b.Fatalf("FMOE_BENCH_WAKE=%q: want futex or nothing", v)
	}
	return o
}

// benchThreads is FMOE_BENCH_THREADS's thread counts (comma-separated;
// default 0, one a core).
func benchThreads(b *testing.B) []int {
	v := os.Getenv("FMOE_BENCH_THREADS")
	if v == "" {
		return []int{0}
	}
	var threads []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			b.Fatalf("FMOE_BENCH_THREADS=%q: %v", v, err)
		}
		threads = append(threads, n)
	}
	return threads
}

// benchExperts is n experts registered on be, each one block of bytes.
type benchExperts struct {
	be      *Backend
	w       [][3]backend.Tensor
	raw     [][]byte
	x, g, u backend.Buffer
	o       backend.Buffer
	size    int
	ys, xs  []backend.Buffer // batch's and task's jobs, reused
	ws, ds  []backend.Tensor
}

func newBenchExperts(b *testing.B, be *Backend, n int) *benchExperts {
	rng := rand.New(rand.NewPCG(3, 4))
	const H, I = 4096, 1024
	var proto [3]backend.Weight
	for i, s := range [][2]int{{I, H}, {I, H}, {H, I}} {
		proto[i], _ = backendtest.RandomWeight(rng, backend.Q4, s[0], s[1], 64)
	}
	ex := &benchExperts{be: be}
	size := 0
	for _, w := range proto {
		size += len(w.Data) + len(w.Scales) + len(w.Biases)
	}
	arena := benchArena(b, n*size)
	for e := range n {
		var blk []byte
		if arena != nil {
			blk = arena[e*size : e*size : (e+1)*size]
		}
		for _, w := range proto {
			blk = append(append(append(blk, w.Data...), w.Scales...), w.Biases...)
		}
		var ts [3]backend.Tensor
		off := 0
		for i, w := range proto {
			c := w
			c.Data = blk[off : off+len(w.Data)]
			off += len(w.Data)
			c.Scales = blk[off : off+len(w.Scales)]
			off += len(w.Scales)
			c.Biases = blk[off : off+len(w.Biases)]
			off += len(w.Biases)
			t, err := be.Register(c)
			if err != nil {
				b.Fatal(err)
			}
			ts[i] = t
		}
		ex.w = append(ex.w, ts)
		ex.raw = append(ex.raw, blk[:len(blk)&^127])
		ex.size = len(blk)
	}
	must := func(buf backend.Buffer, err error) backend.Buffer {
		if err != nil {
			b.Fatal(err)
		}
		return buf
	}
	ex.x = must(be.Alloc(H))
	xs := make([]float32, H)
	for i := range xs {
		xs[i] = float32(rng.NormFloat64())
	}
	be.Write(ex.x, xs)
	ex.g, ex.u, ex.o = must(be.Alloc(10*I)), must(be.Alloc(10*I)), must(be.Alloc(10*H))
	return ex
}

func (ex *benchExperts) run(b *testing.B, K int, mode string) {
	be := ex.be
	const H, I = 4096, 1024
	view := func(buf backend.Buffer, off, n int) backend.Buffer {
		v, err := be.View(buf, off, n)
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	var sum sumJob
	next := 0
	b.ResetTimer()
	t0 := time.Now()
	for range b.N {
		ids := make([]int, K)
		for i := range ids {
			ids[i] = next % len(ex.w)
			next++
		}
		var err error
		switch mode {
		case "read":
			for _, id := range ids {
				sum.b = ex.raw[id]
				blocks := len(sum.b) / 128
				be.pool.run(&sum, blocks, (blocks+be.threads-1)/be.threads)
			}
		case "each":
			for i, id := range ids {
				g, u := view(ex.g, i*I, I), view(ex.u, i*I, I)
				err = errors.Join(err, be.MatMul(g, ex.w[id][0], ex.x, 1), be.MatMul(u, ex.w[id][1], ex.x, 1),
					be.SwiGLU(g, g, u), be.MatMul(view(ex.o, i*H, H), ex.w[id][2], g, 1))
			}
		case "pair":
			for i, id := range ids {
				g, u := view(ex.g, i*I, I), view(ex.u, i*I, I)
				err = errors.Join(err, be.MatVecBatch([]backend.Buffer{g, u}, ex.w[id][:2], []backend.Buffer{ex.x, ex.x}),
					be.SwiGLU(g, g, u), be.MatMul(view(ex.o, i*H, H), ex.w[id][2], g, 1))
			}
		case "batch":
			err = ex.batch(ids)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	el := time.Since(t0)
	b.StopTimer()
	bytes := float64(ex.size) * float64(K) * float64(b.N)
	b.ReportMetric(bytes/el.Seconds()/1e9, "GB/s")
	b.ReportMetric(el.Seconds()*1e3/float64(b.N), "ms/layer")
}

// task computes experts ids as one task of the pool (StartExperts, as
// the model's CPU share does with Options.MissTask), the caller waiting.
func (ex *benchExperts) task(ids []int) error {
	const H, I = 4096, 1024
	var err error
	gus, gu, outs, down := ex.ys[:0], ex.ws[:0], ex.xs[:0], ex.ds[:0]
	for i, id := range ids {
		gus = append(gus, ex.view(ex.g, i*I, I, &err), ex.view(ex.u, i*I, I, &err))
		gu = append(gu, ex.w[id][0], ex.w[id][1])
		outs = append(outs, ex.view(ex.o, i*H, H, &err))
		down = append(down, ex.w[id][2])
	}
	ex.ys, ex.ws, ex.xs, ex.ds = gus, gu, outs, down
	if err == nil {
		err = ex.be.StartExperts(gus, gu, ex.x, outs, down)
	}
	if err == nil {
		_, err = ex.be.WaitExperts()
	}
	return err
}

// view is n values of buf from off, an error joined to err.
func (ex *benchExperts) view(buf backend.Buffer, off, n int, err *error) backend.Buffer {
	v, e := ex.be.View(buf, off, n)
	*err = errors.Join(*err, e)
	return v
}

// batch computes experts ids as the model's CPU share does (computeApart):
// every gate and up in one MatVecBatch, SwiGLU, every down in one.
func (ex *benchExperts) batch(ids []int) error {
	be := ex.be
	const H, I = 4096, 1024
	var err error
	view := func(buf backend.Buffer, off, n int) backend.Buffer { return ex.view(buf, off, n, &err) }
	K := len(ids)
	ys, ws, xs := ex.ys[:0], ex.ws[:0], ex.xs[:0]
	for i, id := range ids {
		ys = append(ys, view(ex.g, i*I, I), view(ex.u, i*I, I))
		ws = append(ws, ex.w[id][0], ex.w[id][1])
		xs = append(xs, ex.x, ex.x)
	}
	err = errors.Join(err, be.MatVecBatch(ys, ws, xs), be.SwiGLU(view(ex.g, 0, K*I), view(ex.g, 0, K*I), view(ex.u, 0, K*I)))
	ys, ws, xs = ys[:0], ws[:0], xs[:0]
	for i, id := range ids {
		ys = append(ys, view(ex.o, i*H, H))
		ws = append(ws, ex.w[id][2])
		xs = append(xs, view(ex.g, i*I, I))
	}
	err = errors.Join(err, be.MatVecBatch(ys, ws, xs))
	ex.ys, ex.ws, ex.xs = ys, ws, xs
	return err
}
