package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// BenchmarkBandwidth is the acceptance measure of the matvec kernels: each
// iteration times a read-only pass (readSum: vector loads XORed together,
// the cheapest way to touch every byte) over one expert's weight bytes and
// the matvec over another's, on the same threads, and reports both rates
// and matvec/ceiling. Interleaving them makes the ratio fair on a loaded
// machine. Experts cycle through 128 MiB, so both come from memory.
func BenchmarkBandwidth(b *testing.B) {
	for _, f := range []backend.Format{backend.Q2, backend.Q4, backend.Q8, backend.BF16} {
		for _, isa := range isaLevels() {
			for _, th := range []int{1, 2} {
				for _, s := range [][2]int{{1024, 4096}, {4096, 1024}} {
					runKernels(b, f, isa, fmt.Sprintf("/threads%d/%dx%d", th, s[0], s[1]), func(b *testing.B) { benchBW(b, f, isa, th, s[0], s[1]) })
				}
			}
		}
	}
}

// runKernels runs bench as "<format>/<isa><suffix>" with the level's own
// kernel, then as "<format>/<isa>-<alt><suffix>" with each alternative for
// the format and level (benchAlts), right after the kernel it would replace.
func runKernels(b *testing.B, f backend.Format, isa int, suffix string, bench func(b *testing.B)) {
	b.Run(fmt.Sprintf("%v/%s%s", f, isaNames[isa], suffix), bench)
	for _, a := range benchAlts {
		if a.f == f && a.isa == isa {
			b.Run(fmt.Sprintf("%v/%s-%s%s", f, isaNames[isa], a.name, suffix), func(b *testing.B) {
				defer a.use()()
				bench(b)
			})
		}
	}
}

// benchAlts are kernels that BenchmarkBandwidth, BenchmarkKernelHot and
// BenchmarkPrefill also run in place of a level's own for one format (named <isa>-<name>), to
// compare them in one run; an architecture's tests fill it. use installs
// the alternative and returns what restores the kernel it replaced.
var benchAlts []benchAlt

type benchAlt struct {
	f    backend.Format
	isa  int
	name string
	use  func() (restore func())
}

// benchBackend is a CPU backend of threads threads held to kernel level
// isa, closed when b ends.
func benchBackend(b *testing.B, threads, isa int) *Backend {
	be := New(Options{Threads: threads})
	b.Cleanup(func() { be.Close() })
	be.isa = isa
	if isa == isaGo {
		be.path = PathGo
	}
	return be
}

func benchBW(b *testing.B, f backend.Format, isa, threads, R, C int) {
	be := benchBackend(b, threads, isa)
	rng := rand.New(rand.NewPCG(1, 2))
	w, _ := backendtest.RandomWeight(rng, f, R, C, 64)
	size := len(w.Data) + len(w.Scales) + len(w.Biases)
	n := max(2, (128<<20)/size)
	ts := make([]backend.Tensor, n)
	raw := make([][]byte, n) // each expert's bytes in one block, as in a pack
	for i := range ts {
		blk := make([]byte, 0, size+128)
		blk = append(append(append(blk, w.Data...), w.Scales...), w.Biases...)
		c := w
		c.Data = blk[:len(w.Data)]
		c.Scales = blk[len(w.Data) : len(w.Data)+len(w.Scales)]
		c.Biases = blk[len(w.Data)+len(w.Scales) : size]
		raw[i] = blk[:size&^127]
		t, err := be.Register(c)
		if err != nil {
			b.Fatal(err)
		}
		ts[i] = t
	}
	x, _ := be.Alloc(C)
	y, _ := be.Alloc(R)
	xs := make([]float32, C)
	for i := range xs {
		xs[i] = float32(rng.NormFloat64())
	}
	be.Write(x, xs)
	var sum sumJob
	var tSum, tMat, cSum, cMat time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0, c0 := time.Now(), cpuTime()
		sum.b = raw[i%n]
		be.pool.run(&sum, len(sum.b)/128, (len(sum.b)/128+threads-1)/threads)
		t1, c1 := time.Now(), cpuTime()
		if err := be.MatMul(y, ts[(i+n/2)%n], x, 1); err != nil {
			b.Fatal(err)
		}
		t2, c2 := time.Now(), cpuTime()
		tSum += t1.Sub(t0)
		tMat += t2.Sub(t1)
		cSum += c1 - c0
		cMat += c2 - c1
	}
	// Rates from CPU time count threads×seconds, so they are scaled by
	// threads to be comparable with the wall-clock ones.
	mb := float64(size) * float64(b.N) / 1e6
	b.ReportMetric(mb/tMat.Seconds(), "matvec-MB/s")
	b.ReportMetric(mb/tSum.Seconds(), "ceiling-MB/s")
	b.ReportMetric(100*tSum.Seconds()/tMat.Seconds(), "%ceiling")
	b.ReportMetric(float64(threads)*mb/cMat.Seconds(), "matvec-MB/cpu-s")
	b.ReportMetric(float64(threads)*mb/cSum.Seconds(), "ceiling-MB/cpu-s")
	b.ReportMetric(100*cSum.Seconds()/cMat.Seconds(), "%ceiling-cpu")
}

// sumJob is readSum over b's 128-byte blocks [lo, hi) as a pool task.
type sumJob struct {
	b   []byte
	out [8]uint64
}

func (j *sumJob) do(part, lo, hi int) {
	j.out[part%8] ^= readSum(j.b[lo*128 : hi*128])
}

// BenchmarkKernelHot re-uses one 256×4096 weight that stays in L2: the
// kernels' compute rate (weight bytes per second) without the memory
// system, which a kernel must exceed by a margin to run at memory speed.
func BenchmarkKernelHot(b *testing.B) {
	for _, f := range []backend.Format{backend.Q2, backend.Q4, backend.Q8, backend.BF16} {
		for _, isa := range isaLevels() {
			runKernels(b, f, isa, "", func(b *testing.B) { benchHot(b, f, isa) })
		}
	}
}

func benchHot(b *testing.B, f backend.Format, isa int) {
	be := benchBackend(b, 1, isa)
	w, _ := backendtest.RandomWeight(rand.New(rand.NewPCG(1, 2)), f, 256, 4096, 64)
	t, _ := be.Register(w)
	x, _ := be.Alloc(4096)
	y, _ := be.Alloc(256)
	size := len(w.Data) + len(w.Scales) + len(w.Biases)
	b.SetBytes(int64(size))
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		be.MatMul(y, t, x, 1)
	}
	b.ReportMetric(float64(size)*float64(b.N)/1e6/(cpuTime()-c0).Seconds(), "MB/cpu-s")
}

// BenchmarkPrefill is a 16-token matmul through one 397B expert
// projection at each kernel level, in tokens per CPU-second. (A 4-token
// AVX-512 kernel that decoded each weight line once for 4 tokens was tried
// and measured no faster, 0.9-1.2x, so it is not kept.)
func BenchmarkPrefill(b *testing.B) {
	for _, f := range []backend.Format{backend.Q2, backend.Q4} {
		for _, isa := range isaLevels() {
			runKernels(b, f, isa, "/1024x4096/T16", func(b *testing.B) { benchPrefill(b, f, isa) })
		}
	}
}

func benchPrefill(b *testing.B, f backend.Format, isa int) {
	be := benchBackend(b, 1, isa)
	const R, C, T = 1024, 4096, 16
	w, _ := backendtest.RandomWeight(rand.New(rand.NewPCG(1, 2)), f, R, C, 64)
	t, _ := be.Register(w)
	x, _ := be.Alloc(T * C)
	y, _ := be.Alloc(T * R)
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		be.MatMul(y, t, x, T)
	}
	cs := (cpuTime() - c0).Seconds()
	b.ReportMetric(float64(T*b.N)/cs, "tok/cpu-s")
}
