package model

import (
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// BenchmarkCPUBesideLink asks the machine, apart from the runtime's
// schedule, whether the host's CPUs can add bandwidth beside the PCIe link
// (issue 13's row 2 at K=10, where the link bounds fmoe; issue 12 §2's CPU
// misses, which run 17 measured slower than the link alone at every share).
// Experts of the pack's first layer lie in pinned memory, as the host tier
// keeps them. The link binds them to the device one after another (Bind,
// with the previous expert released after the next one's copies are
// queued, as a layer's misses go); the CPU backend computes others, four at
// a time as a CPU share of a K=10 layer would and as the miss rank's share
// apart does (computeApart: gate and up of the four in one dispatch,
// SwiGLU, the downs in one). Each runs alone, then both at
// once; the metrics are GB/s of expert bytes. If the link keeps its rate
// beside the CPUs, a layer's experts could take
// bytes / (link + CPU together) instead of bytes / link.
//
// FMOE_TEST_BACKEND=cuda FMOE_BENCH_MODEL=<pack> on the GPU machine;
// FMOE_BENCH_THREADS (default "16,12") the CPU backend's thread counts.
func BenchmarkCPUBesideLink(b *testing.B) {
	dir := benchModelDir(b)
	be := testBackend(b)
	ha, ok := be.(backend.HostAllocator)
	if !ok {
		b.Skip("needs a device backend with pinned host memory (FMOE_TEST_BACKEND=cuda)")
	}
	m, err := Open(dir, Options{Backend: be, GPUCache: GPUCacheOff, MaxContext: 64})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	const nLink, nCPU, share = 16, 16, 4
	link, bytes := pinnedExperts(b, m, ha, 0, nLink)
	host, _ := pinnedExperts(b, m, ha, nLink, nCPU)
	threads := "16,12"
	if v := os.Getenv("FMOE_BENCH_THREADS"); v != "" {
		threads = v
	}
	for _, f := range strings.Split(threads, ",") {
		th, err := strconv.Atoi(f)
		if err != nil || th < 1 {
			b.Fatalf("FMOE_BENCH_THREADS: %q is not a thread count", f)
		}
		b.Run("threads="+f, func(b *testing.B) {
			cb := cpu.New(cpu.Options{Threads: th})
			defer cb.Close()
			c, err := newCPUShare(cb, m, host, share)
			if err != nil {
				b.Fatal(err)
			}
			const d = 400 * time.Millisecond
			copies := func(stop func() bool) (int, error) { return copyLoop(be, link, stop) }
			for range b.N {
				linkAlone, err1 := rateFor(d, bytes, copies)
				cpuAlone, err2 := rateFor(d, bytes, c.loop)
				var lt, ct float64
				var err3, err4 error
				var wg sync.WaitGroup
				wg.Add(2)
				go func() { defer wg.Done(); lt, err3 = rateFor(d, bytes, copies) }()
				go func() { defer wg.Done(); ct, err4 = rateFor(d, bytes, c.loop) }()
				wg.Wait()
				if err := errors.Join(err1, err2, err3, err4); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(linkAlone, "link-GB/s")
				b.ReportMetric(cpuAlone, "cpu-GB/s")
				b.ReportMetric(lt, "link-beside-cpu-GB/s")
				b.ReportMetric(ct, "cpu-beside-link-GB/s")
				// A K=10 layer's experts over the link alone against split
				// between the two at the rates measured together.
				kb := 10 * float64(bytes) / 1e6
				b.ReportMetric(kb/linkAlone, "k10-link-ms")
				b.ReportMetric(kb/(lt+ct), "k10-split-ms")
			}
		})
	}
}

// pinnedExperts reads n experts of the first layer, from id first on,
// into pinned buffers, checked, and returns their weights and the expert
// stride.
func pinnedExperts(b *testing.B, m *Model, ha backend.HostAllocator, first, n int) ([][3]backend.Weight, int) {
	r := m.experts
	stride := int(r.set.Stride)
	var ws [][3]backend.Weight
	for id := first; id < first+n; id++ {
		buf, err := ha.HostAlloc(stride)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ha.HostFree(buf) })
		e := r.read(0, id, buf[:stride:stride], false)
		if e.err == nil && e.pending {
			r.verify(e, 0)
		}
		if e.err != nil {
			b.Fatal(e.err)
		}
		ws = append(ws, e.w)
	}
	return ws, stride
}

// rateFor runs loop until d has passed and returns its GB/s of experts of
// bytes each.
func rateFor(d time.Duration, bytes int, loop func(stop func() bool) (int, error)) (float64, error) {
	t0 := time.Now()
	n, err := loop(func() bool { return time.Since(t0) >= d })
	return float64(n) * float64(bytes) / time.Since(t0).Seconds() / 1e9, err
}

// copyLoop binds experts to the device in turn until stop, each released
// once the next one's copies are queued, and waits for the last.
func copyLoop(be backend.Backend, ws [][3]backend.Weight, stop func() bool) (int, error) {
	var held [3]backend.Tensor
	release := func() error {
		for i, t := range held {
			if t != nil {
				if err := be.Release(t); err != nil {
					return err
				}
				held[i] = nil
			}
		}
		return nil
	}
	n := 0
	for ; !stop(); n++ {
		var ts [3]backend.Tensor
		for j, w := range ws[n%len(ws)] {
			t, err := be.Bind(w)
			if err != nil {
				return n, err
			}
			ts[j] = t
		}
		if err := release(); err != nil {
			return n, err
		}
		held = ts
	}
	// Releasing a tensor bound from pinned memory waits for its copy.
	return n, release()
}

// cpuShare is a CPU backend computing groups of experts held in pinned
// memory as the miss rank's share apart does (computeApart).
type cpuShare struct {
	be          *cpu.Backend
	ts          [][3]backend.Tensor
	x           backend.Buffer
	j           shareJobs
	group, next int
}

func newCPUShare(be *cpu.Backend, m *Model, ws [][3]backend.Weight, group int) (*cpuShare, error) {
	H, I := m.Config.HiddenSize, m.Config.MoeIntermediateSize
	c := &cpuShare{be: be, group: group}
	for _, w := range ws {
		var t [3]backend.Tensor
		for j := range w {
			var err error
			if t[j], err = be.Bind(w[j]); err != nil {
				return nil, err
			}
		}
		c.ts = append(c.ts, t)
	}
	var err error
	if c.x, err = be.Alloc(H); err != nil {
		return nil, err
	}
	x := make([]float32, H)
	for i := range x {
		x[i] = rand.Float32() - 0.5
	}
	if err := be.Write(c.x, x); err != nil {
		return nil, err
	}
	j := &c.j
	if j.g, err = be.Alloc(group * I); err != nil {
		return nil, err
	}
	if j.u, err = be.Alloc(group * I); err != nil {
		return nil, err
	}
	view := func(buf backend.Buffer, off, n int) backend.Buffer {
		v, e := be.View(buf, off, n)
		err = errors.Join(err, e)
		return v
	}
	for i := range group {
		j.gus = append(j.gus, view(j.g, i*I, I), view(j.u, i*I, I))
		j.xs = append(j.xs, c.x, c.x)
		o, e := be.Alloc(H)
		err = errors.Join(err, e)
		j.outs = append(j.outs, o)
	}
	return c, err
}

// loop computes groups of experts until stop; it returns the experts
// computed.
func (c *cpuShare) loop(stop func() bool) (int, error) {
	n := 0
	for !stop() {
		j := &c.j
		j.gu, j.down = j.gu[:0], j.down[:0]
		for i := range c.group {
			t := c.ts[(c.next+i)%len(c.ts)]
			j.gu = append(j.gu, t[0], t[1])
			j.down = append(j.down, t[2])
		}
		if err := computeApart(c.be, *j); err != nil {
			return n, err
		}
		c.next += c.group
		n += c.group
	}
	return n, nil
}
