package model

import (
	"bytes"
	"math/bits"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// keepTier is the CPU backend with a GPU tier that keeps a copy of every
// expert bound through it (no budget) until DropExpert, so that a test sees
// what a tier holds; a hit binds the copy.
type keepTier struct {
	backend.Backend
	held  map[[2]int][]backend.Weight
	binds map[int]int // BindExpert calls per layer
	drops [][2]int
	// batches and jobs count MatMulBatch's calls and jobs, most the
	// largest batch.
	batches, jobs, most int
	// skip, when set, names experts the tier never keeps.
	skip func(id int) bool
}

// newKeepTier wraps be (nil: a CPU backend).
func newKeepTier(be backend.Backend) *keepTier {
	if be == nil {
		be = cpu.New(cpu.Options{})
	}
	return &keepTier{Backend: be, held: map[[2]int][]backend.Weight{}, binds: map[int]int{}}
}

func (k *keepTier) SetExpertCache(int64, int) error     { clear(k.held); return nil }
func (k *keepTier) DeviceMemory() (int64, int64, error) { return 1 << 40, 1 << 40, nil }
func (k *keepTier) DropExpert(l, id int) error {
	delete(k.held, [2]int{l, id})
	k.drops = append(k.drops, [2]int{l, id})
	return nil
}
func (k *keepTier) CachedExpert(l, id int) ([]backend.Tensor, bool) {
	ws, ok := k.held[[2]int{l, id}]
	if !ok {
		return nil, false
	}
	ts, err := k.bindAll(ws)
	return ts, err == nil
}

func (k *keepTier) BindExpert(l, id int, ws []backend.Weight) ([]backend.Tensor, error) {
	k.binds[l]++
	cp := make([]backend.Weight, len(ws))
	for i, w := range ws {
		w.Data, w.Scales, w.Biases = bytes.Clone(w.Data), bytes.Clone(w.Scales), bytes.Clone(w.Biases)
		cp[i] = w
	}
	if k.skip == nil || !k.skip(id) {
		k.held[[2]int{l, id}] = cp
	}
	return k.bindAll(cp)
}

// MatMulBatch is the wrapped backend's where it has one (CUDA), else one
// MatMul a job: keepTier then takes the model's batched path as the
// backend alone would, and a run through it computes the same bits.
func (k *keepTier) MatMulBatch(ys []backend.Buffer, ws []backend.Tensor, xs []backend.Buffer, Ts []int) error {
	k.batches++
	k.jobs += len(ws)
	k.most = max(k.most, len(ws))
	return matMulBatch(k.Backend, ys, ws, xs, Ts)
}

// matMulBatch is a test wrapper's MatMulBatch: the wrapped backend's where
// it has one, else one MatMul a job. A wrapper that embeds
// backend.Backend alone would hide CUDA's batcher, and the model would
// then compute a many-token step's experts with MatMul, whose K split
// (and so whose bits) differ from the batch's.
func matMulBatch(be backend.Backend, ys []backend.Buffer, ws []backend.Tensor, xs []backend.Buffer, Ts []int) error {
	if mb, ok := be.(backend.MatMulBatcher); ok {
		return mb.MatMulBatch(ys, ws, xs, Ts)
	}
	for i := range ws {
		if err := be.MatMul(ys[i], ws[i], xs[i], Ts[i]); err != nil {
			return err
		}
	}
	return nil
}

func (k *keepTier) bindAll(ws []backend.Weight) ([]backend.Tensor, error) {
	out := make([]backend.Tensor, len(ws))
	for i, w := range ws {
		t, err := k.Bind(w)
		if err != nil {
			return nil, err
		}
		out[i] = t
	}
	return out, nil
}

// TestAsyncCheckGolden: checking first reads beside the compute changes no
// bit of any golden case's logits against checking them before the bind
// (Options.VerifyBeforeCompute), with no tier, with a host tier that evicts
// (forty experts) and with a GPU tier that keeps everything (keepTier: its
// hits compute on copies bound before their check ended).
func TestAsyncCheckGolden(t *testing.T) {
	for _, c := range cases {
		t.Run(c.src+"/"+c.golden, func(t *testing.T) {
			g := readGolden(t, c.golden)
			ref, _ := goldenRun(t, open(t, c.src, c.bits, c.k, Options{VerifyBeforeCompute: true}), g)
			stride := open(t, c.src, c.bits, c.k, Options{}).experts.set.Stride
			for _, v := range []struct {
				name string
				o    Options
			}{
				{"no tier", Options{}},
				{"host tier of forty", Options{HostCache: 40 * stride}},
				// the test backend's arithmetic (CUDA's under FMOE_TEST_BACKEND=cuda):
				// the comparison with ref is bit for bit
				{"GPU tier", Options{Backend: newKeepTier(testBackend(t))}},
			} {
				m := open(t, c.src, c.bits, c.k, v.o)
				for run := 1; run <= 2; run++ {
					got, _ := goldenRun(t, m, g)
					if i := firstDiff(got, ref); i >= 0 {
						t.Fatalf("%s, run %d: logit %d is %v, checked before the bind %v", v.name, run, i, got[i], ref[i])
					}
				}
				if n := len(m.experts.pending); n != 0 {
					t.Errorf("%s: %d checks pending after the steps returned", v.name, n)
				}
			}
		})
	}
}

// TestAsyncCheckDamagedExpert: with every expert block of layer 2 damaged,
// a step fails naming layer 2's expert, file and fmoe-verify whether the
// check runs beside the compute or before the bind; the session then
// refuses to go on; neither the GPU tier (keepTier) nor the host tier
// keeps a layer-2 expert, none is marked verified, and after Reset (and in
// a new session) the same step fails again instead of being served from a
// tier. Undamaged layers are verified once and kept by both tiers, and no
// hidden state after the damaged layer reaches a Capture. With
// FMOE_TEST_BACKEND=cuda the same runs on the GPU's own tier ("device").
func TestAsyncCheckDamagedExpert(t *testing.T) {
	for _, v := range []struct {
		name   string
		before bool
	}{{"beside", false}, {"before", true}, {"device", false}} {
		t.Run(v.name, func(t *testing.T) {
			before := v.before
			var be backend.ExpertCache
			keep := newKeepTier(nil)
			be = keep
			if v.name == "device" {
				tb, ok := testBackend(t).(backend.ExpertCache)
				if !ok {
					t.Skip("the test backend has no GPU tier (FMOE_TEST_BACKEND=cuda)")
				}
				be, keep = tb, nil
			}
			dir, man := damagedCopy(t)
			set := &man.Experts[0]
			path := filepath.Join(dir, set.Dir, set.Layers[2].File)
			for e := range man.Config.NumExperts {
				xorByte(t, path, int64(e)*set.Stride+int64(e)*97%set.Stride)
			}
			m, err := Open(dir, Options{Backend: be.(backend.Backend), HostCache: 8 * set.Stride, VerifyBeforeCompute: before})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			s, err := m.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			prompt := []int{1, 2, 3}
			damagedStep := func(what string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s: no error", what)
				}
				wantAll(t, err, "model: layer 2 expert ", "packed_experts/layer_02.bin", "checksum mismatch", "fmoe-verify --model "+dir)
				if n := strings.Count(err.Error(), "layer 2"); n != 1 {
					t.Errorf("%s: layer 2 named %d times: %v", what, n, err)
				}
				for id := range man.Config.NumExperts {
					if tierHolds(t, be, 2, id) {
						t.Errorf("%s: the GPU tier kept damaged expert %d", what, id)
					}
				}
				m.experts.tier.mu.Lock()
				for k := range m.experts.tier.m {
					if k[0] == 2 {
						t.Errorf("%s: the host tier kept damaged expert %v", what, k)
					}
				}
				m.experts.tier.mu.Unlock()
				for i := range m.experts.verified[2] {
					if v := m.experts.verified[2][i].Load(); v != 0 {
						t.Errorf("%s: layer 2 verified bits %#x", what, v)
					}
				}
				if n := len(m.experts.pending); n != 0 {
					t.Errorf("%s: %d checks pending after the step returned", what, n)
				}
			}
			// No hidden state computed from the damaged layer reaches the
			// caller: Capture sees the embedding and layers 0-1 only.
			var seen []string
			s.Capture = func(name string, _ int, _ []float32) { seen = append(seen, name) }
			_, err = s.ForwardAll(prompt)
			damagedStep("first step", err)
			if want := []string{"embed", "layer00", "layer01"}; strings.Join(seen, " ") != strings.Join(want, " ") {
				t.Errorf("captured %v, want %v", seen, want)
			}
			s.Capture = nil
			// Beside the compute the damaged experts were bound (and kept)
			// before their check failed, then dropped; before the bind
			// they never reach the tier.
			switch {
			case keep == nil:
			case !before && (keep.binds[2] == 0 || len(keep.drops) != keep.binds[2]):
				t.Errorf("beside: %d layer-2 binds, %d drops (%v), want as many, not 0", keep.binds[2], len(keep.drops), keep.drops)
			case before && (keep.binds[2] != 0 || len(keep.drops) != 0):
				t.Errorf("before: %d layer-2 binds and %d drops, want none", keep.binds[2], len(keep.drops))
			}
			if keep != nil {
				for _, k := range keep.drops {
					if k[0] != 2 {
						t.Errorf("an undamaged expert %v was dropped", k)
					}
				}
			}
			if _, err := s.Forward([]int{4}); err == nil || !strings.Contains(err.Error(), "needs Reset or Restore") {
				t.Fatalf("the session went on after a damaged expert: %v", err)
			}
			var held0, verified0 int
			for l := range 2 {
				for id := range man.Config.NumExperts {
					if tierHolds(t, be, l, id) {
						held0++
					}
				}
			}
			for l := range 2 {
				for i := range m.experts.verified[l] {
					verified0 += bits.OnesCount64(m.experts.verified[l][i].Load())
				}
			}
			if held0 == 0 || verified0 == 0 {
				t.Errorf("layers 0-1: %d experts in the GPU tier, %d verified, want some of each", held0, verified0)
			}
			if err := s.Reset(); err != nil {
				t.Fatal(err)
			}
			_, err = s.ForwardAll(prompt)
			damagedStep("after Reset", err)
			s2, err := m.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			_, err = s2.Forward(prompt[:1])
			damagedStep("a new session", err)
		})
	}
}

// tierHolds reports whether GPU tier c holds expert (l, id), releasing
// what a hit bound.
func tierHolds(t *testing.T, c backend.ExpertCache, l, id int) bool {
	t.Helper()
	ts, ok := c.CachedExpert(l, id)
	for _, x := range ts {
		if err := c.(backend.Backend).Release(x); err != nil {
			t.Fatal(err)
		}
	}
	return ok
}
