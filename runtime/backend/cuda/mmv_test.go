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

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// newMMV opens a backend with the one-token integer tensor-core matvec
// aiming at wpsm warps an SM (negative: off), or skips where the card has no
// tensor cores and the path was asked for.
func newMMV(t testing.TB, wpsm int) *Backend { return newMMVWith(t, Options{MMVWarpsPerSM: wpsm}) }

// newMMVWith is newMMV with more options.
func newMMVWith(t testing.TB, o Options) *Backend {
	t.Helper()
	wpsm := o.MMVWarpsPerSM
	newOrSkip(t).Close()
	be, err := NewWithOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	if wpsm > 0 && be.mmv.wpsm == 0 {
		be.Close()
		t.Skipf("no integer m16n8k32 tensor cores on %s", be.Name())
	}
	return be
}

// TestConformanceMatvec runs the conformance suite with the integer
// tensor-core matvec off (it is on by default, so TestConformance checks
// it): every one-token MatMul and MatVecBatch then runs matvec.h's kernels,
// the path for shapes and cards the integer one does not take.
func TestConformanceMatvec(t *testing.T) {
	newOrSkip(t).Close()
	backendtest.Run(t, func() backend.Backend {
		b, err := NewWithOptions(Options{MMVWarpsPerSM: -1})
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// TestMatMulMMV checks one-token matmuls on the tensor cores against
// float64 at the suite's MatMul tolerance (2e-5): Q2, Q4 and Q8, groups of
// 64 and 128, row tails (rows not a multiple of 16), one row, few and many
// tiles per block, activations with a large common offset; that the path
// took each shape (mmvPlan); that a rerun and a MatVecBatch job give the
// very bits of the MatMul (same tiles, same order, whatever the grid), as
// do the variants with x in registers and with the weights through shared
// memory (PIPE); and that matvec.h's kernel (path off) agrees within the
// same tolerance.
func TestMatMulMMV(t *testing.T) {
	be := newMMV(t, mmvOptIn)
	defer be.Close()
	off := newMMV(t, -1)
	defer off.Close()
	reg := newMMVWith(t, Options{MMVWarpsPerSM: mmvOptIn, MMVRegisterX: true})
	defer reg.Close()
	pipe := newMMVWith(t, Options{MMVWarpsPerSM: mmvOptIn, MMVPipe: true})
	defer pipe.Close()
	if !pipe.mmv.pipe {
		t.Fatal("Options.MMVPipe: the PIPE matvecs are not loaded")
	}
	for _, c := range []struct {
		f       backend.Format
		R, C, G int
		offset  bool
	}{
		{backend.Q4, 1024, 4096, 64, false}, // an expert's gate/up
		{backend.Q4, 4096, 1024, 64, true},  // its down
		{backend.Q4, 1003, 8192, 128, true}, // an out-projection's width, a row tail
		{backend.Q4, 20608, 4096, 64, false},
		{backend.Q2, 4099, 1024, 64, true},
		{backend.Q8, 513, 4096, 64, true}, // a router fused with the shared expert's gate
		{backend.Q8, 37, 2048, 128, false},
		{backend.Q4, 1, 512, 64, true}, // one row, four step pairs
	} {
		name := fmt.Sprintf("%v/%dx%d/g%d", c.f, c.R, c.C, c.G)
		rng := rand.New(rand.NewPCG(uint64(c.R), uint64(c.C)))
		w, vals := backendtest.RandomWeight(rng, c.f, c.R, c.C, c.G)
		x := make([]float32, c.C)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
			if c.offset {
				x[i] = 3 + 0.1*x[i]
			}
		}
		wt, err := be.Register(w)
		if err != nil {
			t.Fatal(err)
		}
		tt, err := be.tensor(wt, "test")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, ok := be.mmvPlan(tt.format, tt.rows, tt.cols, tt.group, 1, aligned16(tt)); !ok {
			t.Fatalf("%s: the tensor-core matvec does not take this shape", name)
		}
		want := refMatMul64(vals, c.R, c.C, x, 1)
		got := runTensor(t, be, wt, x, 1, c.R)
		e := relErr64(got, want)
		if !(e <= 2e-5) {
			t.Fatalf("%s: relative error %.3g against float64", name, e)
		}
		cores := runMatMul(t, off, w, x, 1, c.R)
		if ec := relErr64(cores, want); !(ec <= 2e-5) {
			t.Fatalf("%s: matvec.h's relative error %.3g against float64", name, ec)
		}
		t.Logf("%s: relative error %.2g (matvec.h %.2g)", name, e, relErr64(cores, want))
		again := runTensor(t, be, wt, x, 1, c.R)
		batch := batchOne(t, be, wt, x, c.R)
		// x in registers (the default has SMX: x through shared memory)
		// computes the same bits.
		rt, err := reg.Register(w)
		if err != nil {
			t.Fatal(err)
		}
		viaReg, regBatch := runTensor(t, reg, rt, x, 1, c.R), batchOne(t, reg, rt, x, c.R)
		// And the weights through shared memory too (PIPE, opt-in).
		pt, err := pipe.Register(w)
		if err != nil {
			t.Fatal(err)
		}
		viaPipe, pipeBatch := runTensor(t, pipe, pt, x, 1, c.R), batchOne(t, pipe, pt, x, c.R)
		for i := range got {
			g := math.Float32bits(got[i])
			if g != math.Float32bits(again[i]) || g != math.Float32bits(batch[i]) ||
				g != math.Float32bits(viaReg[i]) || g != math.Float32bits(regBatch[i]) ||
				g != math.Float32bits(viaPipe[i]) || g != math.Float32bits(pipeBatch[i]) {
				t.Fatalf("%s: row %d: %v, rerun %v, batch job %v, x in registers %v, its batch job %v, PIPE %v, its batch job %v",
					name, i, got[i], again[i], batch[i], viaReg[i], regBatch[i], viaPipe[i], pipeBatch[i])
			}
		}
	}
}

// batchOne runs x through wt as job 1 of a two-job MatVecBatch (job 0 the
// same weight on zeros) and returns job 1's output.
func batchOne(t *testing.T, be *Backend, wt backend.Tensor, x []float32, R int) []float32 {
	return batchPair(t, be, wt, wt, x, R)
}

// batchPair runs x through w1 as job 1 of a two-job MatVecBatch whose job 0
// is w0 on zeros, and returns job 1's output.
func batchPair(t *testing.T, be *Backend, w0, w1 backend.Tensor, x []float32, R int) []float32 {
	t.Helper()
	C := len(x)
	x0, _ := be.Alloc(C)
	x1, _ := be.Alloc(C)
	y0, _ := be.Alloc(R)
	y1, _ := be.Alloc(R)
	if err := be.Write(x0, make([]float32, C)); err != nil {
		t.Fatal(err)
	}
	if err := be.Write(x1, x); err != nil {
		t.Fatal(err)
	}
	if err := be.MatVecBatch([]backend.Buffer{y0, y1}, []backend.Tensor{w0, w1}, []backend.Buffer{x0, x1}); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, R)
	if err := be.Read(out, y1); err != nil {
		t.Fatal(err)
	}
	return out
}

// mmvShapes are the one-token projections of a Qwen3.5-397B-A17B layer
// (4-bit, group 64) and its head, alone and batched as the routed experts
// run (K=10: 20 gate/up jobs, 10 down jobs), with enough copies of each
// weight to pass the 50 MB L2.
var mmvShapes = []sweepShape{
	{"lm_head 248320x4096", 248320, 4096, 1, 0, 20},
	{"qkvzba 20608x4096", 20608, 4096, 4, 0, 64},
	{"out_proj 4096x8192", 4096, 8192, 8, 0, 64},
	{"shared gate+up 2048x4096", 2048, 4096, 16, 0, 128},
	{"expert gate/up 1024x4096", 1024, 4096, 64, 0, 256},
	{"expert down 4096x1024", 4096, 1024, 64, 0, 256},
	{"batch 20x gate/up 1024x4096", 1024, 4096, 64, 20, 32},
	{"batch 10x down 4096x1024", 4096, 1024, 64, 10, 32},
}

// BenchmarkMMV times the one-token matvec on the model's shapes with the
// integer tensor-core path aiming at 16, 32 and 64 warps an SM and off (matvec.h's default
// setting), in one process: device time per op by CUDA events (best of
// three, each run queued behind busy work), GB/s of weight bytes and the
// share of the device copy's rate (bytes read and written) measured in the
// same run. FMOE_BENCH_MMV_SHAPE (a substring of a shape's name) and
// FMOE_BENCH_MMV_WPSM (a list, -1 for off) narrow it, e.g. for a profiler.
func BenchmarkMMV(b *testing.B) {
	first := newOrSkip(b)
	b.Logf("backend: %s", first.Name())
	copyGBs := deviceCopyGBs(b, first)
	first.Close()
	var shapes []sweepShape
	for _, s := range mmvShapes {
		if strings.Contains(s.name, os.Getenv("FMOE_BENCH_MMV_SHAPE")) {
			shapes = append(shapes, s)
		}
	}
	settings := []int{-1, 16, 32, 64}
	if v := os.Getenv("FMOE_BENCH_MMV_WPSM"); v != "" {
		settings = settings[:0]
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatalf("FMOE_BENCH_MMV_WPSM=%q: %v", v, err)
			}
			settings = append(settings, n)
		}
	}
	ws := shapeWeights(shapes)
	fmt.Printf("mmv device copy %.0f GB/s (read + write)\n", copyGBs)
	for b.Loop() {
		for _, wpsm := range settings {
			be, err := NewWithOptions(Options{MMVWarpsPerSM: wpsm})
			if err != nil {
				b.Fatal(err)
			}
			cases := loadCases(b, be, ws, shapes)
			w := newBusy(b, be)
			label := "matvec.h"
			if wpsm > 0 {
				label = fmt.Sprintf("mmv wpsm=%d", wpsm)
			}
			for _, c := range cases {
				us := timeCase(b, be, c, w)
				gb := float64(c.bytes) / us / 1e3
				fmt.Printf("mmv %-12s %-28s %9.2f us %7.1f GB/s %5.1f%% of copy\n", label, c.name, us, gb, 100*gb/copyGBs)
			}
			if err := be.Close(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// deviceCopyGBs is the device-to-device copy rate, GB/s of bytes read and
// written (a copy moves twice its size): 20 copies of 256 MiB, best of
// three.
func deviceCopyGBs(b *testing.B, be *Backend) float64 {
	w := newBusy(b, be)
	best := math.Inf(1)
	for r := 0; r < 3; r++ {
		d, err := be.gpuTime(func() error {
			for i := 0; i < 20; i++ {
				if err := be.copyDtoD(w.dst.ptr, w.src.ptr, busyBytes); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		best = min(best, d.Seconds())
	}
	return 2 * 20 * busyBytes / best / 1e9
}

// TestNormStage: with the fold on (Options.Fold), NormMatMul computes
// the suite's cases bit for bit as the norm's call and MatMul's, and the
// fused kernel takes the layer's two folds (the input norm of a 4,096
// vector before the in-projection, 64 heads of 128 gated in place before
// out_proj) rather than falling back.
func TestNormStage(t *testing.T) {
	be := newMMVWith(t, Options{MMVWarpsPerSM: mmvOptIn, Fold: true})
	defer be.Close()
	if !be.mmv.fold {
		t.Fatal("Options.Fold: the fold is off")
	}
	backendtest.CheckNormMatMul(t, be)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		name   string
		H, dim int
		gate   bool
		rows   int
	}{
		{"input norm", 1, 4096, false, 256},
		{"gated heads", 64, 128, true, 128},
	} {
		n := c.H * c.dim
		w, _ := backendtest.RandomWeight(rng, backend.Q4, c.rows, n, 64)
		wt, err := be.Register(w)
		if err != nil {
			t.Fatal(err)
		}
		nw, err := be.Register(backendtest.DenseF32(1, c.dim, make([]float32, c.dim)))
		if err != nil {
			t.Fatal(err)
		}
		x, _ := be.Alloc(n)
		y, _ := be.Alloc(n)
		z, _ := be.Alloc(n)
		o, _ := be.Alloc(c.rows)
		nr := backend.Norm{Y: y, X: x, Z: z, L: backend.Heads{T: 1, H: c.H, Dim: c.dim, RowStride: n, HeadStride: c.dim},
			W: nw, Eps: 1e-6, Gate: c.gate}
		if c.gate {
			nr.Y = x // in place, as the model's
		}
		done, err := be.normStageMatMul(nr, o, wt)
		if err != nil || !done {
			t.Fatalf("%s: the fused kernel did not take it (%v)", c.name, err)
		}
	}
}
