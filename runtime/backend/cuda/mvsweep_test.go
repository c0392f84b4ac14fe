//go:build linux && cgo

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// The decode matvec's tuning grid. Rows·Unroll is what a lane keeps in
// flight (and in registers) per step, 512·NR·U bytes a warp: 2 to 16 here,
// the default (2, 4) in the middle; NR=4, U=8 needs 128 registers for the
// weights alone, so it is left out. Launches pair warps per block with
// blocks per SM for 16, 32 and 64 resident warps per SM; 64 exceeds what
// any setting's registers allow, which measures a second wave of blocks.
var (
	sweepPairs = [][2]int{{1, 4}, {1, 8}, {2, 2}, {2, 4}, {2, 8}, {4, 2}, {4, 4}}
	// sweepDeep are the (nr, u) pairs also compiled with MV_DEPTH 2.
	sweepDeep   = [][2]int{{2, 2}, {2, 4}, {4, 2}}
	sweepLaunch = [][2]int{{4, 4}, {4, 8}, {8, 4}, {16, 2}, {8, 8}}
)

// sweepModules are the compiled settings of the grid, default first.
func sweepModules() []MatvecConfig {
	var cs []MatvecConfig
	for _, p := range sweepPairs {
		cs = append(cs, MatvecConfig{Rows: p[0], Unroll: p[1]})
	}
	for _, p := range sweepDeep {
		cs = append(cs, MatvecConfig{Rows: p[0], Unroll: p[1], Depth: 2})
	}
	def := slices.IndexFunc(cs, func(c MatvecConfig) bool {
		return c.Rows == DefaultMatvecRows && c.Unroll == DefaultMatvecUnroll && c.Depth == 0
	})
	cs[0], cs[def] = cs[def], cs[0]
	return cs
}

// withLaunch is m with the launch l: warps per block, blocks per SM.
func withLaunch(m MatvecConfig, l [2]int) MatvecConfig {
	m.Warps, m.BlocksPerSM = l[0], l[1]
	return m
}

// setLaunch changes the launch shape of an open backend's matvecs; the
// module (Rows, Unroll) stays.
func (be *Backend) setLaunch(c MatvecConfig) {
	be.mv.Warps, be.mv.BlocksPerSM = c.Warps, c.BlocksPerSM
	be.lim.MatvecWarps, be.lim.MatvecBlocks = c.Warps, c.BlocksPerSM*be.dev.sms
}

// precompile compiles the grid's modules in parallel (each is a whole
// module: ~10 s of NVRTC alone), so the sweep waits for the slowest only.
func precompile(tb testing.TB, be *Backend) {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(sweepModules()))
	for i, m := range sweepModules() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = moduleImage(be.dev.major, be.dev.minor, "", m.defines())
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	tb.Logf("%d modules ready in %v", len(errs), time.Since(start).Round(time.Millisecond))
}

// openModule opens a backend compiled with m's Rows and Unroll, its
// batched matvecs too, with the one-token tensor-core matvec off (the
// sweep and its bit-identity test are about matvec.h), or fails the test
// (the GPU is known to be there).
func openModule(tb testing.TB, m MatvecConfig) *Backend {
	be, err := NewWithOptions(Options{Matvec: m, BatchMatvec: m, MMVWarpsPerSM: -1})
	if err != nil {
		tb.Fatalf("%v: %v", m.defines(), err)
	}
	return be
}

// sweepShape is one timed case: a matvec cycling over copies of a weight
// (together past the 50 MB L2, so weights come from HBM as at run time),
// or a MatVecBatch of jobs experts' projections per launch.
type sweepShape struct {
	name   string
	R, C   int
	copies int
	jobs   int // 0: MatMul; else MatVecBatch of this many jobs
	iters  int
}

var sweepShapes = []sweepShape{
	{"lm_head 248320x4096", 248320, 4096, 1, 0, 20},
	{"mixer 8192x4096", 8192, 4096, 8, 0, 64},
	{"expert gate/up 1024x4096", 1024, 4096, 64, 0, 256},
	{"expert down 4096x1024", 4096, 1024, 64, 0, 256},
	{"batch 20x gate/up 1024x4096", 1024, 4096, 64, 20, 32},
	{"batch 10x down 4096x1024", 4096, 1024, 64, 10, 32},
}

// sweepCase is a shape's weights, registered on one backend, and its x, y.
type sweepCase struct {
	sweepShape
	bytes int // weight bytes of one op (all jobs of a batch)
	ts    []backend.Tensor
	xs    []backend.Buffer
	ys    []backend.Buffer
}

func (c *sweepCase) run(be *Backend, n int) error {
	for i := 0; i < n; i++ {
		if c.jobs == 0 {
			if err := be.MatMul(c.ys[0], c.ts[i%c.copies], c.xs[0], 1); err != nil {
				return err
			}
			continue
		}
		ws := make([]backend.Tensor, c.jobs)
		for j := range ws {
			ws[j] = c.ts[(i*c.jobs+j)%c.copies]
		}
		if err := be.MatVecBatch(c.ys, ws, c.xs); err != nil {
			return err
		}
	}
	return nil
}

// shapeWeights makes one random 4-bit weight per distinct shape of shapes.
func shapeWeights(shapes []sweepShape) map[[2]int]backend.Weight {
	ws := map[[2]int]backend.Weight{}
	for _, s := range shapes {
		if _, ok := ws[[2]int{s.R, s.C}]; !ok {
			ws[[2]int{s.R, s.C}] = fastQ4(s.R, s.C, uint64(s.R)^uint64(s.C)<<20)
		}
	}
	return ws
}

// loadCases registers the shapes' weights (made once, in ws) on be.
func loadCases(tb testing.TB, be *Backend, ws map[[2]int]backend.Weight, shapes []sweepShape) []*sweepCase {
	var cs []*sweepCase
	for _, s := range shapes {
		w := ws[[2]int{s.R, s.C}]
		c := &sweepCase{sweepShape: s, bytes: weightBytes(w) * max(1, s.jobs)}
		for i := 0; i < s.copies; i++ {
			t, err := be.Register(w)
			if err != nil {
				tb.Fatalf("%s: register copy %d: %v", s.name, i, err)
			}
			c.ts = append(c.ts, t)
		}
		for j := 0; j < max(1, s.jobs); j++ {
			x, err := be.Alloc(s.C)
			if err != nil {
				tb.Fatal(err)
			}
			xs := make([]float32, s.C)
			for i := range xs {
				xs[i] = float32((i+j)%7) - 3
			}
			be.Write(x, xs)
			y, err := be.Alloc(s.R)
			if err != nil {
				tb.Fatal(err)
			}
			c.xs, c.ys = append(c.xs, x), append(c.ys, y)
		}
		cs = append(cs, c)
	}
	return cs
}

type sweepResult struct {
	cfg MatvecConfig
	us  float64 // device time per op
}

// BenchmarkMatVecSweep times the decode matvec (4-bit, group 64) for every
// configuration of the grid on the model's shapes, one line per
// (configuration, shape): device time per op by CUDA events (best of
// three runs) and GB/s of weight bytes; then the best configuration per
// shape beside the default. Every configuration computes the same bits
// (TestMatVecConfigsBitIdentical), so the fastest can simply become the
// default (DefaultMatvec* in mvconfig.go).
func BenchmarkMatVecSweep(b *testing.B) {
	first := newOrSkip(b)
	b.Logf("backend: %s", first.Name())
	precompile(b, first)
	first.Close()

	start := time.Now()
	ws := shapeWeights(sweepShapes)
	b.Logf("weights made in %v", time.Since(start).Round(time.Millisecond))

	results := make([][]sweepResult, len(sweepShapes))
	for b.Loop() {
		for i := range results {
			results[i] = results[i][:0]
		}
		for _, m := range sweepModules() {
			be := openModule(b, m)
			cases := loadCases(b, be, ws, sweepShapes)
			w := newBusy(b, be)
			for _, l := range sweepLaunch {
				cfg := withLaunch(m, l)
				be.setLaunch(cfg)
				for i, c := range cases {
					us := timeCase(b, be, c, w)
					results[i] = append(results[i], sweepResult{cfg, us})
					warps, blocks := plan(b, be, c)
					fmt.Printf("mvsweep %-28s %-30s warps=%-2d blocks=%-4d %9.2f us %7.1f GB/s\n", cfg, c.name,
						warps, blocks, us, float64(c.bytes)/us/1e3)
				}
			}
			if err := be.Close(); err != nil {
				b.Fatal(err)
			}
		}
	}
	printBest(results)
}

// plan is the warps per block and blocks (per job) c's launches use.
func plan(b *testing.B, be *Backend, c *sweepCase) (warps, blocks int) {
	t, err := be.tensor(c.ts[0], "sweep")
	if err != nil {
		b.Fatal(err)
	}
	w := t.weight()
	warps, blocks, _, _ = be.ops.MatvecPlan(&w)
	if c.jobs > 0 {
		warps = min(warps, be.batch.mvThreads[backend.Q4-backend.Q2]/32)
	}
	return warps, blocks
}

// busy is device work queued ahead of a timed run (40 copies of 256 MiB,
// some 5 ms) so that the host has queued the run's launches before the
// device reaches them: an expert's matvec takes about a microsecond, less
// than the host spends launching it, and would otherwise time the host.
type busy struct{ src, dst *buf }

const busyBytes = 256 << 20

func newBusy(tb testing.TB, be *Backend) busy {
	s, err := be.Alloc(busyBytes / 4)
	if err != nil {
		tb.Fatal(err)
	}
	d, err := be.Alloc(busyBytes / 4)
	if err != nil {
		tb.Fatal(err)
	}
	return busy{s.(*buf), d.(*buf)}
}

func (w busy) queue(be *Backend) error {
	for i := 0; i < 40; i++ {
		if err := be.copyDtoD(w.dst.ptr, w.src.ptr, busyBytes); err != nil {
			return err
		}
	}
	return nil
}

// timeCase is c's device time per op in µs: the best of three runs of
// c.iters ops, each queued behind busy work, after a warm-up pass over
// every copy. It includes the gaps between kernels on the device, not the
// host's launch cost.
func timeCase(b *testing.B, be *Backend, c *sweepCase, w busy) float64 {
	if err := c.run(be, c.copies); err != nil {
		b.Fatalf("%s: %v", c.name, err)
	}
	best := math.Inf(1)
	for r := 0; r < 3; r++ {
		if err := w.queue(be); err != nil {
			b.Fatal(err)
		}
		d, err := be.gpuTime(func() error { return c.run(be, c.iters) })
		if err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
		best = min(best, float64(d.Nanoseconds())/1e3/float64(c.iters))
	}
	return best
}

// printBest prints, per shape, the fastest configuration and the default,
// then the configuration with the smallest geometric mean of time relative
// to the default over all shapes.
func printBest(results [][]sweepResult) {
	def := defaultMatvec
	geo := map[MatvecConfig]float64{}
	for i, rs := range results {
		if len(rs) == 0 {
			continue
		}
		var d sweepResult
		for _, r := range rs {
			if r.cfg == def {
				d = r
			}
		}
		best := slices.MinFunc(rs, func(a, b sweepResult) int { return cmpFloat(a.us, b.us) })
		fmt.Printf("mvsweep best %-30s %-28s %9.2f us %7.1f GB/s; default %9.2f us (%.2fx)\n", sweepShapes[i].name,
			best.cfg, best.us, gbs(i, best.us), d.us, d.us/best.us)
		for _, r := range rs {
			geo[r.cfg] += math.Log(r.us / d.us)
		}
	}
	cfgs := make([]MatvecConfig, 0, len(geo))
	for c := range geo {
		cfgs = append(cfgs, c)
	}
	sort.Slice(cfgs, func(i, j int) bool {
		a, b := geo[cfgs[i]], geo[cfgs[j]]
		return a < b || a == b && cfgs[i].String() < cfgs[j].String()
	})
	for _, c := range cfgs[:min(5, len(cfgs))] {
		fmt.Printf("mvsweep overall %-28s %.3fx the default's time (geometric mean over shapes)\n", c,
			math.Exp(geo[c]/float64(len(results))))
	}
}

func gbs(shape int, us float64) float64 {
	s := sweepShapes[shape]
	w := fastQ4Bytes(s.R, s.C) * max(1, s.jobs)
	return float64(w) / us / 1e3
}

// fastQ4Bytes is weightBytes of fastQ4(R, C, ·).
func fastQ4Bytes(R, C int) int { return R*C/2 + 2*2*(R*C/64) }

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestMatVecConfigsBitIdentical runs every configuration of the sweep grid
// on random Q4, Q2, Q8 and BF16 weights, at shapes with row tails (rows
// not a multiple of rows per warp or per block) and chunk tails (chunks per
// row not a multiple of 32·MV_U), for one token (MatMul and MatVecBatch)
// and five (a four-token pass and a one-token pass), and requires the very
// bits of the default configuration.
func TestMatVecConfigsBitIdentical(t *testing.T) {
	first := newOrSkip(t)
	precompile(t, first)
	first.Close()

	type shape struct {
		f       backend.Format
		R, C, G int
	}
	shapes := []shape{
		{backend.Q4, 1003, 4096, 64}, // 128 chunks: whole batches of U=4
		{backend.Q4, 37, 2112, 64},   // 66 chunks: a partial batch; few rows
		{backend.Q2, 4099, 1024, 64}, // 16 chunks: fewer than a warp's lanes
		{backend.Q8, 515, 2080, 32},  // 130 chunks
		{backend.BF16, 301, 1032, 0}, // 129 chunks
	}
	rng := rand.New(rand.NewPCG(5, 6))
	type data struct {
		w backend.Weight
		x []float32 // 5 tokens
	}
	ds := make([]data, len(shapes))
	for i, s := range shapes {
		ds[i].w, _ = backendtest.RandomWeight(rng, s.f, s.R, s.C, s.G)
		ds[i].x = make([]float32, 5*s.C)
		for j := range ds[i].x {
			ds[i].x[j] = float32(rng.NormFloat64()) + 0.5 // a non-zero mean, as MLX biases need
		}
	}
	// outputs: T=1 MatMul, T=5 MatMul, a two-job MatVecBatch (x tokens 0 and 1).
	run := func(be *Backend, d data) [3][]float32 {
		var out [3][]float32
		R, C := d.w.Rows, d.w.Cols
		wt, err := be.Register(d.w)
		if err != nil {
			t.Fatal(err)
		}
		xb, _ := be.Alloc(5 * C)
		be.Write(xb, d.x)
		for k, T := range []int{1, 5} {
			yb, _ := be.Alloc(T * R)
			if err := be.MatMul(yb, wt, xb, T); err != nil {
				t.Fatal(err)
			}
			out[k] = make([]float32, T*R)
			if err := be.Read(out[k], yb); err != nil {
				t.Fatal(err)
			}
		}
		x0, _ := be.View(xb, 0, C)
		x1, _ := be.View(xb, C, C)
		y0, _ := be.Alloc(R)
		y1, _ := be.Alloc(R)
		if err := be.MatVecBatch([]backend.Buffer{y0, y1}, []backend.Tensor{wt, wt}, []backend.Buffer{x0, x1}); err != nil {
			t.Fatal(err)
		}
		out[2] = make([]float32, 2*R)
		if err := be.Read(out[2][:R], y0); err != nil {
			t.Fatal(err)
		}
		if err := be.Read(out[2][R:], y1); err != nil {
			t.Fatal(err)
		}
		return out
	}

	want := make([][3][]float32, len(shapes))
	ref := openModule(t, defaultMatvec)
	for i, d := range ds {
		want[i] = run(ref, d)
	}
	ref.Close()
	for _, m := range sweepModules() {
		be := openModule(t, m)
		for _, l := range slices.Concat(sweepLaunch, [][2]int{{1, 1}, {32, 1}}) {
			cfg := withLaunch(m, l)
			be.setLaunch(cfg)
			// Launch as asked: the plan would halve the warps of these
			// short matrices to give every SM two blocks.
			be.lim.SMs = 1
			for i, d := range ds {
				got := run(be, d)
				for k, what := range []string{"T=1", "T=5", "batch"} {
					if j := firstDiff(got[k], want[i][k]); j >= 0 {
						s := shapes[i]
						t.Errorf("%v: %v %dx%d g%d %s: y[%d] = %g, default %g", cfg, s.f, s.R, s.C, s.G, what, j,
							got[k][j], want[i][k][j])
					}
				}
			}
		}
		be.Close()
	}
}

// firstDiff is the first index where a and b differ in bits, or -1.
func firstDiff(a, b []float32) int {
	for i := range b {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}
