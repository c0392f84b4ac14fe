package cpu

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// TestStartExperts: a share handed to the pool's workers (StartExperts,
// WaitExperts) computes what the three ops compute (MatVecBatch of gates
// and ups, SwiGLU, MatVecBatch of downs), bit for bit, on any number of
// threads, on every kernel path, for one expert and several, with an
// intermediate size a multiple of 4 (Q4) and not (BF16: the pair rows'
// padding), with the workers woken through their channels or the futex.
func TestStartExperts(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 33))
	for _, c := range []struct {
		f       backend.Format
		H, I, G int
	}{{backend.Q4, 256, 128, 64}, {backend.BF16, 64, 30, 0}} {
		for _, n := range []int{1, 3} {
			ws, x := shareInputs(r, c.f, n, c.H, c.I, c.G)
			for _, p := range []Path{PathAuto, PathGo, PathReference} {
				for _, th := range []int{1, 2, 5, 16} {
					for _, futex := range []bool{false, true} {
						be := New(Options{Threads: th, Path: p, FutexWake: futex})
						want := shareByOps(t, be, ws, x)
						got := shareByTask(t, be, ws, x)
						be.Close()
						if i := backendtest.FirstDiff(got, want); i >= 0 {
							t.Fatalf("%v H=%d I=%d, %d experts, path %v, %d threads, futex %v: value %d is %v by the task, %v by the ops",
								c.f, c.H, c.I, n, p, th, futex, i, got[i], want[i])
						}
					}
				}
			}
		}
	}
}

// TestStartExpertsRefused: a share whose shapes disagree is an error
// naming what is wrong, and a second start before the wait is refused.
func TestStartExpertsRefused(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 44))
	be := New(Options{Threads: 3})
	defer be.Close()
	bind := func(rows, cols int) backend.Tensor {
		w, _ := backendtest.RandomWeight(r, backend.BF16, rows, cols, 0)
		wt, err := be.Bind(w)
		if err != nil {
			t.Fatal(err)
		}
		return wt
	}
	buf := func(n int) backend.Buffer {
		b, err := be.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	x := buf(16)
	gate, up, down := bind(8, 16), bind(8, 16), bind(16, 8)
	gus, outs := []backend.Buffer{buf(8), buf(8)}, []backend.Buffer{buf(16)}
	for _, c := range []struct {
		gu   []backend.Tensor
		down []backend.Tensor
		want string
	}{
		{[]backend.Tensor{gate}, []backend.Tensor{down}, "want 2n"},
		{[]backend.Tensor{gate, bind(6, 16)}, []backend.Tensor{down}, "one intermediate size"},
		{[]backend.Tensor{gate, up}, []backend.Tensor{bind(16, 6)}, "share down 0"},
	} {
		err := be.StartExperts(gus, c.gu, x, outs, c.down)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error with %q, got %v", c.want, err)
		}
	}
	if _, err := be.WaitExperts(); err == nil {
		t.Error("WaitExperts with no share started: want an error")
	}
	if err := be.StartExperts(gus, []backend.Tensor{gate, up}, x, outs, []backend.Tensor{down}); err != nil {
		t.Fatal(err)
	}
	if err := be.StartExperts(gus, []backend.Tensor{gate, up}, x, outs, []backend.Tensor{down}); err == nil {
		t.Error("a second StartExperts before WaitExperts: want an error")
	}
	if _, err := be.WaitExperts(); err != nil {
		t.Fatal(err)
	}
}

// shareInputs is a share of n random experts (gate, up, down of each: I×H,
// I×H, H×I in format f, group size G) and a random x of H values.
func shareInputs(r *rand.Rand, f backend.Format, n, H, I, G int) ([]backend.Weight, []float32) {
	ws := make([]backend.Weight, 3*n)
	for i := range ws {
		if i%3 == 2 {
			ws[i], _ = backendtest.RandomWeight(r, f, H, I, G)
		} else {
			ws[i], _ = backendtest.RandomWeight(r, f, I, H, G)
		}
	}
	x := make([]float32, H)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return ws, x
}

// shareBufs binds a share's weights (gate, up, down of each expert) and
// makes its buffers: x written, and the gates' and ups' and the downs'
// outputs.
func shareBufs(t *testing.T, be *Backend, ws []backend.Weight, x []float32) (gu, down []backend.Tensor, xb backend.Buffer, gus, outs []backend.Buffer) {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	var err error
	xb, err = be.Alloc(len(x))
	must(err)
	must(be.Write(xb, x))
	for i, w := range ws {
		wt, err := be.Bind(w)
		must(err)
		y, err := be.Alloc(w.Rows)
		must(err)
		if i%3 == 2 {
			down, outs = append(down, wt), append(outs, y)
		} else {
			gu, gus = append(gu, wt), append(gus, y)
		}
	}
	return gu, down, xb, gus, outs
}

// shareRead is the downs' outputs, then the SwiGLU values, end to end.
func shareRead(t *testing.T, be *Backend, outs, gus []backend.Buffer) []float32 {
	t.Helper()
	var all []float32
	for i, b := range append(append([]backend.Buffer{}, outs...), gus...) {
		if i >= len(outs) && (i-len(outs))%2 == 1 {
			continue // an up's output: SwiGLU reads it, the ops and the task alike
		}
		h := make([]float32, b.Len())
		if err := be.Read(h, b); err != nil {
			t.Fatal(err)
		}
		all = append(all, h...)
	}
	return all
}

func shareByOps(t *testing.T, be *Backend, ws []backend.Weight, x []float32) []float32 {
	t.Helper()
	gu, down, xb, gus, outs := shareBufs(t, be, ws, x)
	n := len(down)
	xs := make([]backend.Buffer, 2*n)
	gs := make([]backend.Buffer, n)
	for i := range xs {
		xs[i] = xb
	}
	for i := range n {
		gs[i] = gus[2*i]
	}
	if err := be.MatVecBatch(gus, gu, xs); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := be.SwiGLU(gus[2*i], gus[2*i], gus[2*i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := be.MatVecBatch(outs, down, gs); err != nil {
		t.Fatal(err)
	}
	return shareRead(t, be, outs, gus)
}

func shareByTask(t *testing.T, be *Backend, ws []backend.Weight, x []float32) []float32 {
	t.Helper()
	gu, down, xb, gus, outs := shareBufs(t, be, ws, x)
	if err := be.StartExperts(gus, gu, xb, outs, down); err != nil {
		t.Fatal(err)
	}
	if took, err := be.WaitExperts(); err != nil || took <= 0 {
		t.Fatalf("WaitExperts: %v, %v: want a time above 0", took, err)
	}
	return shareRead(t, be, outs, gus)
}

// TestStartExpertsAfterSleep: shares started after the workers have gone
// to sleep (in the futex, as fmoe-run's share runs them, or on their
// channels), alternating with ops, each computes the same bits as the
// first: a wake lost between a share and the next would hang here, a part
// left from the last share would change the sums.
func TestStartExpertsAfterSleep(t *testing.T) {
	ws, x := shareInputs(rand.New(rand.NewPCG(5, 55)), backend.Q4, 2, 128, 64, 64)
	for _, futex := range []bool{true, false} {
		be := New(Options{Threads: 4, FutexWake: futex})
		want := shareByTask(t, be, ws, x)
		for i := range 20 {
			if i%5 == 4 {
				time.Sleep(2 * time.Millisecond) // past the workers' spin: they sleep
			}
			got := shareByTask(t, be, ws, x)
			if j := backendtest.FirstDiff(got, want); j >= 0 {
				t.Fatalf("futex %v, share %d: value %d is %v, the first share's %v", futex, i, j, got[j], want[j])
			}
			if i%3 == 0 {
				shareByOps(t, be, ws, x)
			}
		}
		be.Close()
	}
}

// TestWaitExpertsLateJoin: a caller that reaches WaitExperts after the
// workers have finished the share (fmoe-run's caller waits for the GPU's
// part first) joins with nothing left to do, and the time WaitExperts
// returns is the share's, not the caller's arrival: --cpu-experts auto
// reads it as the CPUs' cost. A try counts only if the workers got the
// share done before the caller came (on a loaded machine they may not).
func TestWaitExpertsLateJoin(t *testing.T) {
	ws, x := shareInputs(rand.New(rand.NewPCG(6, 66)), backend.Q4, 2, 128, 64, 64)
	be := New(Options{Threads: 4, FutexWake: true})
	defer be.Close()
	gu, down, xb, gus, outs := shareBufs(t, be, ws, x)
	const late = 100 * time.Millisecond
	var tooks []time.Duration
	for range 3 {
		if err := be.StartExperts(gus, gu, xb, outs, down); err != nil {
			t.Fatal(err)
		}
		time.Sleep(late)
		took, err := be.WaitExperts()
		if err != nil {
			t.Fatal(err)
		}
		if took > 0 && took < late/2 {
			return
		}
		tooks = append(tooks, took)
	}
	t.Fatalf("a share of 2 small experts, the caller joining %v late, took %v: want the workers' time, under %v", late, tooks, late/2)
}
