package model

import (
	"errors"
	"math"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// recorder is the CPU backend with a GraphRecorder of closures, so that the
// model's use of graphs is tested without a GPU: ops called while
// recording are kept and run at each replay on the arguments they were
// given, as a CUDA graph replays its kernels. Ops that take host data that
// changes from step to step (ids, rows, positions) or that move memory are
// refused while recording, so a recording that held one would fail the
// test instead of replaying stale values.
type recorder struct {
	backend.Backend
	rec      *[]func() error // the graph being recorded, or nil
	epoch    int             // bumped by the test: every graph goes stale
	failNext int             // recordings still to fail (a first-use decode)
	records  int             // recordings made
	combines int             // CombineToken calls
}

type fakeGraph struct {
	r     *recorder
	ops   []func() error
	epoch int
}

var errFakeRecording = errors.New("fake: refused while recording")

func (r *recorder) BeginGraph() error {
	if r.rec != nil {
		return errors.New("fake: nested recording")
	}
	r.rec = new([]func() error)
	return nil
}

func (r *recorder) EndGraph() (backend.Graph, error) {
	ops := *r.rec
	r.rec = nil
	r.records++
	return &fakeGraph{r: r, ops: ops, epoch: r.epoch}, nil
}

func (g *fakeGraph) Replay() error {
	if g.epoch != g.r.epoch {
		return backend.ErrGraphStale
	}
	for _, op := range g.ops {
		if err := op(); err != nil {
			return err
		}
	}
	return nil
}

func (g *fakeGraph) Release() error { g.ops = nil; return nil }

// op runs fn now, or keeps it while recording.
func (r *recorder) op(fn func() error) error {
	if r.rec == nil {
		return fn()
	}
	*r.rec = append(*r.rec, fn)
	return nil
}

// refuse fails while recording, else runs fn.
func (r *recorder) refuse(fn func() error) error {
	if r.rec != nil {
		return errFakeRecording
	}
	return fn()
}

func (r *recorder) MatMul(y backend.Buffer, w backend.Tensor, x backend.Buffer, T int) error {
	return r.op(func() error { return r.Backend.MatMul(y, w, x, T) })
}
func (r *recorder) RMSNorm(y, x backend.Buffer, l backend.Heads, w backend.Tensor, eps float32) error {
	if r.rec != nil && r.failNext > 0 {
		r.failNext--
		return errFakeRecording
	}
	return r.op(func() error { return r.Backend.RMSNorm(y, x, l, w, eps) })
}

// AddRMSNorm gives the fake the fused residual norm (backend.AddNormer), as
// CUDA has it, with RMSNorm's injected recording failures: a recording that
// fails there must leave the add to the ops run in its place.
func (r *recorder) AddRMSNorm(y, h, res backend.Buffer, l backend.Heads, w backend.Tensor, eps float32) error {
	if r.rec != nil && r.failNext > 0 {
		r.failNext--
		return errFakeRecording
	}
	return r.op(func() error {
		if err := r.Backend.Add(h, res); err != nil {
			return err
		}
		return r.Backend.RMSNorm(y, h, l, w, eps)
	})
}
func (r *recorder) GatedRMSNorm(y, x, z backend.Buffer, l backend.Heads, w backend.Tensor, eps float32) error {
	return r.op(func() error { return r.Backend.GatedRMSNorm(y, x, z, l, w, eps) })
}
func (r *recorder) Conv1D(y, x backend.Buffer, w backend.Tensor, state backend.Buffer, T int) error {
	return r.op(func() error { return r.Backend.Conv1D(y, x, w, state, T) })
}
func (r *recorder) DeltaNet(y, qkv, a, b backend.Buffer, aLog, dtBias backend.Tensor, state backend.Buffer, s backend.DeltaShape) error {
	return r.op(func() error { return r.Backend.DeltaNet(y, qkv, a, b, aLog, dtBias, state, s) })
}
func (r *recorder) SwiGLU(y, g, u backend.Buffer) error {
	return r.op(func() error { return r.Backend.SwiGLU(y, g, u) })
}
func (r *recorder) Add(dst, src backend.Buffer) error {
	return r.op(func() error { return r.Backend.Add(dst, src) })
}
func (r *recorder) GatedAdd(h, x, gate backend.Buffer, T int) error {
	return r.op(func() error { return r.Backend.GatedAdd(h, x, gate, T) })
}

func (r *recorder) Alloc(n int) (backend.Buffer, error) {
	if r.rec != nil {
		return nil, errFakeRecording
	}
	return r.Backend.Alloc(n)
}
func (r *recorder) Free(b backend.Buffer) error {
	return r.refuse(func() error { return r.Backend.Free(b) })
}
func (r *recorder) Write(d backend.Buffer, s []float32) error {
	return r.refuse(func() error { return r.Backend.Write(d, s) })
}
func (r *recorder) Read(d []float32, s backend.Buffer) error {
	return r.refuse(func() error { return r.Backend.Read(d, s) })
}
func (r *recorder) Copy(d, s backend.Buffer) error {
	return r.refuse(func() error { return r.Backend.Copy(d, s) })
}
func (r *recorder) Zero(b backend.Buffer) error {
	return r.refuse(func() error { return r.Backend.Zero(b) })
}
func (r *recorder) Embed(y backend.Buffer, w backend.Tensor, ids []int) error {
	return r.refuse(func() error { return r.Backend.Embed(y, w, ids) })
}
func (r *recorder) Rope(x backend.Buffer, l backend.Heads, d int, th float64, p int) error {
	return r.refuse(func() error { return r.Backend.Rope(x, l, d, th, p) })
}
func (r *recorder) Attention(out, q, g backend.Buffer, ql, gl backend.Heads, k, v backend.Buffer, kvh, p int) error {
	return r.refuse(func() error { return r.Backend.Attention(out, q, g, ql, gl, k, v, kvh, p) })
}
func (r *recorder) Gather(d, s backend.Buffer, rows []int, n int) error {
	return r.refuse(func() error { return r.Backend.Gather(d, s, rows, n) })
}
func (r *recorder) ScatterAdd(d, s backend.Buffer, rows []int, w []float32, n int) error {
	return r.refuse(func() error { return r.Backend.ScatterAdd(d, s, rows, w, n) })
}

// CombineToken stands in for CUDA's one-launch combine with the separate
// CPU ops (the arithmetic backend.TokenCombiner promises), so that the
// rows, weights and shared-expert buffers the model hands it are checked.
func (r *recorder) CombineToken(h, eo backend.Buffer, w []float32, sd, gate backend.Buffer) error {
	if r.rec != nil {
		return errFakeRecording
	}
	r.combines++
	return hostCombine(r.Backend, h, eo, w, sd, gate)
}

// hostCombine is backend.TokenCombiner's arithmetic in the separate ops.
func hostCombine(be backend.Backend, h, eo backend.Buffer, w []float32, sd, gate backend.Buffer) error {
	H := h.Len()
	acc, err := be.Alloc(H)
	if err != nil {
		return err
	}
	err = errors.Join(be.Zero(acc), be.ScatterAdd(acc, eo, make([]int, len(w)), w, H))
	switch {
	case sd != nil && gate != nil:
		err = errors.Join(err, be.GatedAdd(acc, sd, gate, 1))
	case sd != nil:
		err = errors.Join(err, be.Add(acc, sd))
	}
	return errors.Join(err, be.Add(h, acc), be.Free(acc))
}

func (r *recorder) Bind(w backend.Weight) (backend.Tensor, error) {
	if r.rec != nil {
		return nil, errFakeRecording
	}
	return r.Backend.Bind(w)
}

// TestGraphLogic: on a backend that records (the CPU fake above), decoding
// through the layers' graphs gives the logits of the plain CPU backend bit
// for bit, for Qwen3.5 (GatedDeltaNet layers recorded whole, attention
// layers from their post-attention norm), GLM-4.5 and DeepSeek-V3 (dense
// and MoE layers; latent attention) and Qwen3-MoE; a failed first recording is retried; a graph
// goes stale when the backend's memory moves and when a prefill
// reallocates the activations, and is recorded again. The fake's
// CombineToken (the separate ops) checks the fused combine's arguments.
func TestGraphLogic(t *testing.T) {
	for _, src := range []string{"hf", "../arch/glm4_moe/hf", "../arch/deepseek_v3/hf", "../arch/qwen3_moe/hf"} {
		t.Run(src, func(t *testing.T) {
			run := func(rec *recorder) [][]float32 {
				var o Options
				if rec != nil {
					o.Backend = rec
				} else {
					be := cpu.New(cpu.Options{})
					t.Cleanup(func() { be.Close() })
					o.Backend = be
				}
				m := open(t, src, 16, 0, o)
				ids := make([]int, 26)
				for i := range ids {
					ids[i] = (i*7919 + 5) % m.Config.VocabSize
				}
				s, err := m.NewSession()
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				var out [][]float32
				step := func(lg []float32, err error) {
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, lg)
				}
				for i, id := range ids[:8] {
					if i == 5 && rec != nil {
						rec.epoch++ // the backend's scratch moved
					}
					step(s.Forward([]int{id}))
				}
				step(s.ForwardAll(ids[8:20])) // reallocates the activations
				for _, id := range ids[20:26] {
					step(s.Forward([]int{id}))
				}
				if rec != nil {
					held := 0
					for _, g := range s.gr.g {
						if g != nil {
							held++
						}
					}
					// Each layer recorded at the first steps, again after
					// the move and again after the prefill.
					if n := len(m.layers); held != n || rec.records < 3*n {
						t.Fatalf("%d of %d layers hold graphs after %d recordings (want all, and at least %d)", held, n, rec.records, 3*n)
					}
					if rec.combines == 0 {
						t.Fatal("no decode step combined through backend.TokenCombiner")
					}
				}
				return out
			}
			be := cpu.New(cpu.Options{})
			t.Cleanup(func() { be.Close() })
			rec := &recorder{Backend: be, failNext: 2}
			want, got := run(nil), run(rec)
			for i := range want {
				for j := range want[i] {
					if math.Float32bits(want[i][j]) != math.Float32bits(got[i][j]) {
						t.Fatalf("step %d: logit %d is %v through graphs, %v without", i, j, got[i][j], want[i][j])
					}
				}
			}
			t.Logf("%d steps bit-identical, %d recordings", len(want), rec.records)
		})
	}
}

// TestGraphLogicSplit: with a second device, decoding through rank 0's
// graphs gives the logits of plain CPU ranks bit for bit, and the combine
// takes the separate ops (the routed sum arrives as all-reduced partials,
// which backend.TokenCombiner cannot take).
func TestGraphLogicSplit(t *testing.T) {
	run := func(rec *recorder) [][]float32 {
		dev := cpu.New(cpu.Options{})
		t.Cleanup(func() { dev.Close() })
		o := Options{Devices: []backend.Backend{dev}}
		if rec != nil {
			o.Backend = rec
		} else {
			be := cpu.New(cpu.Options{})
			t.Cleanup(func() { be.Close() })
			o.Backend = be
		}
		m := open(t, "hf", 16, 0, o)
		s, err := m.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var out [][]float32
		for i := range 6 {
			lg, err := s.Forward([]int{(i*7919 + 5) % m.Config.VocabSize})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, lg)
		}
		return out
	}
	be := cpu.New(cpu.Options{})
	t.Cleanup(func() { be.Close() })
	rec := &recorder{Backend: be}
	want, got := run(nil), run(rec)
	if rec.records == 0 || rec.combines != 0 {
		t.Fatalf("%d recordings, %d fused combines over two devices (want some, none)", rec.records, rec.combines)
	}
	for i := range want {
		for j := range want[i] {
			if math.Float32bits(want[i][j]) != math.Float32bits(got[i][j]) {
				t.Fatalf("step %d: logit %d is %v through graphs, %v without", i, j, got[i][j], want[i][j])
			}
		}
	}
}
