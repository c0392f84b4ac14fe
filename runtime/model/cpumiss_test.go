package model

import (
	"bytes"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// holdTier is a CPU backend with a stand-in GPU tier that keeps every
// expert keep accepts (nil: all) after its first bind, and serves it from
// then on: the hits and misses a real tier makes, on the CPU.
type holdTier struct {
	backend.Backend
	keep  func(l, id int) bool
	held  map[[2]int][]backend.Tensor
	own   map[backend.Tensor]bool
	binds int // BindExpert calls
}

func newHoldTier(keep func(l, id int) bool) *holdTier {
	return &holdTier{Backend: cpu.New(cpu.Options{}), keep: keep, held: map[[2]int][]backend.Tensor{}, own: map[backend.Tensor]bool{}}
}

func (h *holdTier) SetExpertCache(int64, int) error     { return nil }
func (h *holdTier) DeviceMemory() (int64, int64, error) { return 64 << 30, 80 << 30, nil }
func (h *holdTier) CachedExpert(l, id int) ([]backend.Tensor, bool) {
	ts, ok := h.held[[2]int{l, id}]
	return ts, ok
}
func (h *holdTier) DropExpert(l, id int) error {
	delete(h.held, [2]int{l, id})
	return nil
}

// BindExpert keeps a copy of the bytes (the stream reuses its buffers).
func (h *holdTier) BindExpert(l, id int, ws []backend.Weight) ([]backend.Tensor, error) {
	h.binds++
	keep := h.keep == nil || h.keep(l, id)
	out := make([]backend.Tensor, len(ws))
	for i, w := range ws {
		if keep {
			w.Data, w.Scales, w.Biases = bytes.Clone(w.Data), bytes.Clone(w.Scales), bytes.Clone(w.Biases)
		}
		t, err := h.Bind(w)
		if err != nil {
			return nil, err
		}
		out[i] = t
		if keep {
			h.own[t] = true
		}
	}
	if keep {
		h.held[[2]int{l, id}] = out
	}
	return out, nil
}

// Release leaves the tier's tensors bound, as a real tier does.
func (h *holdTier) Release(t backend.Tensor) error {
	if h.own[t] {
		return nil
	}
	return h.Backend.Release(t)
}

func evenExperts(_, id int) bool { return id%2 == 0 }

// combTier is a holdTier that combines a token in one call, as CUDA does
// (backend.TokenCombiner, in the separate CPU ops), so that a one-token
// step takes the fused combine and a miss rank sends its rows to rank 0.
type combTier struct {
	*holdTier
	combines int
}

func (c *combTier) CombineToken(h, eo backend.Buffer, w []float32, sd, gate backend.Buffer) error {
	c.combines++
	return hostCombine(c.Backend, h, eo, w, sd, gate)
}

// TestGoldenCPUMisses runs every golden case with a stand-in GPU tier on
// rank 0 that keeps the even experts and a CPU miss rank: the prompt cold
// (first misses take the GPU path) and warm (a prompt's repeat misses stay
// on rank 0: none on the miss rank), then the greedy continuation (one-
// token steps: the even experts hit, the odd ones go to the miss rank),
// held to the goldens' 1e-4.
func TestGoldenCPUMisses(t *testing.T) {
	for _, c := range allGoldenCases() {
		if c.golden == "bf16-long" && testing.Short() {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			g := readGolden(t, c.golden)
			tier := newHoldTier(evenExperts)
			mb := &binds{Backend: cpu.New(cpu.Options{Threads: 2})}
			t.Cleanup(func() { mb.Close(); tier.Close() })
			m := open(t, c.src, c.bits, c.k, Options{Backend: tier, MissBackend: mb})
			checkHiddenAndLogits(t, m, g) // cold: the tier fills
			checkHiddenAndLogits(t, m, g) // warm: the prompt's misses stay on rank 0
			st0, n0 := m.ExpertStats(), mb.n
			if st0.MissRank != 0 || n0 != 0 {
				t.Fatalf("prompts: %d misses on the miss rank, %d binds there: want none", st0.MissRank, n0)
			}
			checkGreedy(t, m, g) // one-token steps: even experts hit, odd repeat misses go to the CPU
			st := m.ExpertStats()
			hits, misses := st.GPUHits-st0.GPUHits, st.MissRank-st0.MissRank
			if hits == 0 || misses == 0 || hits+misses > st.Uses-st0.Uses {
				t.Errorf("decode: %d hits + %d misses of %d uses", hits, misses, st.Uses-st0.Uses)
			}
			if int64(mb.n-n0) != 3*misses {
				t.Errorf("decode: %d binds on the miss rank for %d misses", mb.n-n0, misses)
			}
		})
	}
}

// TestCPUMissesPlacement: with a tier that keeps every expert, first
// misses fill it, so the miss rank never computes and the run is bit for
// bit the plain path's with the same tier. With one that keeps the even
// experts, warm, every even expert a step routes to is a hit computed on
// rank 0 and every odd one a miss bound and computed on the miss rank
// only, in one-token steps (a prompt's misses stay on rank 0): rank 0's
// tier binds nothing.
func TestCPUMissesPlacement(t *testing.T) {
	g := readGolden(t, "bf16")
	ids := g.i64["input_ids"]
	tier := newHoldTier(nil)
	mb := &binds{Backend: cpu.New(cpu.Options{Threads: 1})}
	defer mb.Close()
	m := open(t, "hf", 16, 0, Options{Backend: tier, MissBackend: mb})
	ref := open(t, "hf", 16, 0, Options{Backend: newHoldTier(nil)})
	forwardAll(t, m, ids)
	forwardAll(t, ref, ids)
	n0 := mb.n
	if n0 != 0 {
		t.Fatalf("cold: the miss rank bound %d tensors: a first miss must fill the tier", n0)
	}
	for range 2 {
		want, got := forwardAll(t, ref, ids), forwardAll(t, m, ids)
		if i := firstDiff(got, want); i >= 0 {
			t.Fatalf("all hits: logit %d differs from the plain path", i)
		}
	}
	if mb.n != n0 {
		t.Errorf("all hits: %d experts bound on the miss rank", mb.n-n0)
	}

	odd := newHoldTier(evenExperts)
	mo := &binds{Backend: cpu.New(cpu.Options{Threads: 1})}
	defer mo.Close()
	m2 := open(t, "hf", 16, 0, Options{Backend: odd, MissBackend: mo})
	forwardAll(t, m2, ids)
	st0, b0, tb0 := m2.ExpertStats(), mo.n, odd.binds
	s, err := m2.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var even, other int64
	s.onRoute = func(_ int, idx []int, _ []float32) {
		seen := map[int]bool{}
		for _, e := range idx {
			if !seen[e] {
				seen[e] = true
				if e%2 == 0 {
					even++
				} else {
					other++
				}
			}
		}
	}
	tm := &Timing{}
	s.Timing = tm
	stepEach(t, s, ids)
	var rep strings.Builder
	tm.Report(&rep)
	if cpuN := tm.Prefill.MissRank + tm.Decode.MissRank; cpuN != other || tm.Devices != 1 || !strings.Contains(rep.String(), "computed on the CPU, experts") {
		t.Errorf("--timing: %d CPU misses (want %d) on %d devices (want 1):\n%s", cpuN, other, tm.Devices, rep.String())
	}
	st := m2.ExpertStats()
	if hits, misses := st.GPUHits-st0.GPUHits, st.MissRank-st0.MissRank; hits != even || misses != other || even == 0 || other == 0 {
		t.Errorf("warm: %d hits, %d misses on the miss rank; the routes had %d even and %d odd experts", hits, misses, even, other)
	}
	if got := int64(mo.n - b0); got != 3*other {
		t.Errorf("warm: %d binds on the miss rank, want 3 per odd expert (%d)", got, 3*other)
	}
	if odd.binds != tb0 {
		t.Errorf("warm: rank 0's tier bound %d experts: a miss went to rank 0", odd.binds-tb0)
	}
}

// TestCPUMissesShare: with MissShare ½ the repeat misses of one-token
// steps split between the miss rank and rank 0's copies (within one expert
// of half over the pass: the share carries from expert to expert), and a
// decode step's miss-rank rows reach rank 0's one-launch combine: the
// goldens hold, cold and warm, prompt and greedy decode.
func TestCPUMissesShare(t *testing.T) {
	g := readGolden(t, "bf16")
	tier := &combTier{holdTier: newHoldTier(evenExperts)}
	mb := &binds{Backend: cpu.New(cpu.Options{Threads: 2})}
	t.Cleanup(func() { mb.Close(); tier.Close() })
	m := open(t, "hf", 16, 0, Options{Backend: tier, MissBackend: mb, MissShare: 0.5})
	checkHiddenAndLogits(t, m, g) // cold: the tier fills
	st0, tb0 := m.ExpertStats(), tier.binds
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stepEach(t, s, g.i64["input_ids"]) // the prompt again, a token at a time: every miss a repeat
	st := m.ExpertStats()
	repeat, cpuN := st.Uses-st0.Uses-(st.GPUHits-st0.GPUHits), st.MissRank-st0.MissRank
	if repeat < 4 || math.Abs(float64(cpuN)-float64(repeat)/2) > 1 {
		t.Errorf("warm steps: %d of %d repeat misses on the miss rank, want half", cpuN, repeat)
	}
	if got := int64(tier.binds - tb0); got != repeat-cpuN {
		t.Errorf("warm steps: rank 0 bound %d misses, want the other half (%d)", got, repeat-cpuN)
	}
	c0, st0 := tier.combines, m.ExpertStats()
	checkGreedy(t, m, g)
	if st := m.ExpertStats(); tier.combines == c0 || st.MissRank == st0.MissRank {
		t.Errorf("decode: %d fused combines, %d experts on the miss rank: want both", tier.combines-c0, st.MissRank-st0.MissRank)
	}
}

// TestCPUMissesChecked: a flipped byte in an expert that misses the tier
// and is computed on the miss rank is still caught by the read's
// checksum, naming the layer and fmoe-verify. A miss-rank read is never an
// expert's first (first misses take the GPU path, whose first read is
// checked), so the damage comes after a clean pass, as a disk going bad
// does, with Options.VerifyEveryRead.
func TestCPUMissesChecked(t *testing.T) {
	dir, man := damagedCopy(t)
	set := &man.Experts[0]
	path := filepath.Join(dir, set.Dir, set.Layers[2].File)
	tier := newHoldTier(evenExperts)
	mb := cpu.New(cpu.Options{Threads: 1})
	defer mb.Close()
	m, err := Open(dir, Options{Backend: tier, MissBackend: mb, VerifyEveryRead: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	fwd := func() error {
		s, err := m.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for _, id := range []int{1, 2, 3} { // one-token steps: the miss rank's
			if _, err := s.Forward([]int{id}); err != nil {
				return err
			}
		}
		return nil
	}
	if err := fwd(); err != nil {
		t.Fatal(err)
	}
	for e := range man.Config.NumExperts {
		if e%2 == 1 {
			xorByte(t, path, int64(e)*set.Stride+int64(e)*97%set.Stride)
		}
	}
	st0 := m.ExpertStats()
	err = fwd()
	wantAll(t, err, "model: layer 2 expert ", "checksum mismatch", "fmoe-verify")
	if st := m.ExpertStats(); st.MissRank == st0.MissRank {
		t.Errorf("no expert went to the miss rank in the damaged pass: %+v", st)
	}
}

// TestCPUMissesRefused: a miss backend excludes further devices, a
// placement, and being the model's own backend.
func TestCPUMissesRefused(t *testing.T) {
	dir := packed(t, "hf", 16)
	be := cpu.New(cpu.Options{Threads: 1})
	defer be.Close()
	other := cpu.New(cpu.Options{Threads: 1})
	defer other.Close()
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{Backend: be, MissBackend: be}, "needs a backend of its own"},
		{Options{Backend: be, MissBackend: other, Devices: []backend.Backend{cpu.New(cpu.Options{Threads: 1})}}, "cannot be combined"},
		{Options{Backend: be, MissBackend: other, MissShare: 1.5}, "want a share in (0, 1]"},
		{Options{Backend: be, MissBackend: other, MissShare: math.NaN()}, "want a share in (0, 1]"},
		{Options{Backend: be, MissShare: 0.5}, "a miss backend"},
	} {
		_, err := Open(dir, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error containing %q, got %v", c.want, err)
		}
	}
	m, err := Open(dir, Options{Backend: be, MissBackend: other})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.SetPlacement(nil); err == nil || !strings.Contains(err.Error(), "MissBackend") {
		t.Errorf("SetPlacement with a miss rank: %v", err)
	}
}

// TestInterleave: the link's misses and the miss rank's alternate in
// proportion, the link's first, each list's order kept.
func TestInterleave(t *testing.T) {
	for _, c := range []struct{ a, b, want []int }{
		{[]int{1, 2}, []int{8, 9}, []int{1, 8, 2, 9}},
		{[]int{1, 2, 3}, []int{9}, []int{1, 9, 2, 3}},
		{[]int{1}, []int{7, 8, 9}, []int{1, 7, 8, 9}},
		{[]int{1, 2, 3, 4}, []int{8, 9}, []int{1, 8, 2, 3, 9, 4}},
		{nil, []int{8, 9}, []int{8, 9}},
		{[]int{1, 2}, nil, []int{1, 2}},
	} {
		if got := interleave(nil, c.a, c.b); !slices.Equal(got, c.want) {
			t.Errorf("interleave(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// TestCPUMissesApart: with missApart a decode step's miss-rank share, when
// the host tier holds all of it, is computed on a goroutine of its own
// while the link's misses stream (onApart counts it), and the logits are
// the interleaved path's bit for bit, over cold and warm passes (the same
// placements, so the same sums in the same order) and within the goldens'
// tolerance. A share the host tier does not hold whole falls back to the
// interleaved path (the cold passes, which read it into the tier).
func TestCPUMissesApart(t *testing.T) {
	defer func(v bool, f func(int)) { missApart, onApart = v, f }(missApart, onApart)
	g := readGolden(t, "bf16")
	for _, share := range []float64{0.5, 1} {
		// Interleaved, apart on a goroutine of the share's own, apart as
		// one task of the CPU backend's threads (Options.MissTask).
		var passes [3][3][]float32
		var hostHits [3]int64
		for i, apart := range []bool{false, true, true} {
			missApart = apart
			n := 0
			onApart = func(k int) { n += k }
			tier := &combTier{holdTier: newHoldTier(evenExperts)}
			mb := cpu.New(cpu.Options{Threads: 2 + i})
			t.Cleanup(func() { mb.Close(); tier.Close() })
			m := open(t, "hf", 16, 0, Options{Backend: tier, MissBackend: mb, MissShare: share, HostCache: 1 << 30, MissTask: i == 2})
			for p := range passes[i] {
				passes[i][p] = decodeLogits(t, m, g)
			}
			st := m.ExpertStats()
			if st.MissRank == 0 {
				t.Errorf("share %v, apart %v: no expert on the miss rank", share, apart)
			}
			hostHits[i] = st.HostHits
			if apart != (n > 0) {
				t.Errorf("share %v, apart %v: %d experts computed apart", share, apart, n)
			}
			checkGreedy(t, m, g)
		}
		for i, how := range map[int]string{1: "apart", 2: "as one task"} {
			for p := range passes[0] {
				if !slices.Equal(passes[0][p], passes[i][p]) {
					t.Errorf("share %v, pass %d: the logits %s differ from the interleaved path's", share, p, how)
				}
			}
			if hostHits[0] != hostHits[i] {
				t.Errorf("share %v: %d host-tier hits %s, %d interleaved: want the same count", share, hostHits[i], how, hostHits[0])
			}
		}
	}
}

// decodeLogits is the logits of the golden prompt and of each step that
// feeds the golden continuation, in order.
func decodeLogits(t *testing.T, m *Model, g *golden) []float32 {
	t.Helper()
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	lg, err := s.Forward(g.i64["input_ids"])
	if err != nil {
		t.Fatal(err)
	}
	all := slices.Clone(lg)
	for _, id := range g.i64["generated_ids"] {
		if lg, err = s.Forward([]int{id}); err != nil {
			t.Fatal(err)
		}
		all = append(all, lg...)
	}
	return all
}

// TestCPUMissesOnDevice is fmoe-run --cpu-experts as a user runs it:
// half of each one-token step's repeat misses computed by a CPU backend
// apart while the others cross the link, every expert from a host tier,
// with no GPU tier (--gpu-cache 0, issue 13's row 2) and with one of a
// third of the model's experts, which evicts (as the default tier,
// smaller than the model, does). On a backend with a GPU tier
// (FMOE_TEST_BACKEND=cuda) that tier is the device's own; elsewhere a CPU
// stand-in keeping the most recent. Every golden case holds to
// the goldens' tolerance and greedy continuation cold (the host tier
// fills, first misses take the link) and warm (the miss rank computes its
// share apart: onApart counts it).
func TestCPUMissesOnDevice(t *testing.T) {
	be := testBackend(t)
	_, device := be.(backend.ExpertCache)
	defer func(f func(int)) { onApart = f }(onApart)
	for _, third := range []bool{false, true} {
		for _, c := range allGoldenCases() {
			if c.golden == "bf16-long" && testing.Short() {
				continue
			}
			name := "no-gpu-tier/" + c.name
			if third {
				name = "gpu-tier-third/" + c.name
			}
			t.Run(name, func(t *testing.T) {
				g := readGolden(t, c.golden)
				n := 0
				onApart = func(k int) { n += k }
				mb := cpu.New(cpu.Options{Threads: 4})
				t.Cleanup(func() { mb.Close() })
				o := Options{Backend: be, GPUCache: GPUCacheOff, HostCache: 1 << 30, MissBackend: mb, MissShare: 0.5}
				if third {
					// A third of the model's experts: the tier evicts.
					p := open(t, c.src, c.bits, c.k, Options{Backend: cpu.New(cpu.Options{Threads: 1}), GPUCache: GPUCacheOff})
					tier := p.Config.NumHiddenLayers * p.Config.NumExperts / 3
					o.GPUCache = int64(tier) * p.experts.tierEntryBytes()
					p.be.Close()
					if !device {
						o.Backend = &combLRU{lruTier: newLRUTier(tier)}
					}
				} else if !device {
					o.Backend = &combTier{holdTier: newHoldTier(func(_, _ int) bool { return false })}
				}
				if !device {
					t.Cleanup(func() { o.Backend.Close() })
				}
				m := open(t, c.src, c.bits, c.k, o)
				checkGreedy(t, m, g) // cold
				checkGreedy(t, m, g) // warm
				if st := m.ExpertStats(); st.MissRank == 0 || n == 0 {
					t.Errorf("%d experts on the miss rank, %d of them apart: want both above 0", st.MissRank, n)
				}
			})
		}
	}
}

// combLRU is lruTier with the fused combine, as combTier is holdTier.
type combLRU struct{ *lruTier }

func (c *combLRU) CombineToken(h, eo backend.Buffer, w []float32, sd, gate backend.Buffer) error {
	return hostCombine(c.Backend, h, eo, w, sd, gate)
}

// TestCPUMissesPartialHost: with a host tier too small for the layers'
// repeat misses (12 slots for 8 layers' odd experts), the miss rank takes
// its share from the experts the host tier holds, so every decode step's
// share runs apart (none falls back to the interleaved path, as a share
// with one unheld expert would), the unheld ones cross the link, and the
// goldens hold.
func TestCPUMissesPartialHost(t *testing.T) {
	defer func(v bool, f func(int)) { missApart, onApart = v, f }(missApart, onApart)
	missApart = true
	g := readGolden(t, "bf16")
	probe := open(t, "hf", 16, 0, Options{})
	stride := probe.experts.set.Stride
	apart := 0
	onApart = func(k int) { apart += k }
	tier := &combTier{holdTier: newHoldTier(evenExperts)}
	mb := cpu.New(cpu.Options{Threads: 2})
	t.Cleanup(func() { mb.Close(); tier.Close() })
	m := open(t, "hf", 16, 0, Options{Backend: tier, MissBackend: mb, MissShare: 1, HostCache: 12 * stride})
	checkGreedy(t, m, g) // cold: first misses cross the link and fill the host tier
	for pass := range 2 {
		s, err := m.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Forward(g.i64["input_ids"]); err != nil {
			t.Fatal(err)
		}
		st0, a0, b0 := m.ExpertStats(), apart, tier.binds
		stepEach(t, s, g.i64["generated_ids"])
		st := m.ExpertStats()
		cpuN, linkN := st.MissRank-st0.MissRank, tier.binds-b0
		if cpuN == 0 || linkN == 0 {
			t.Errorf("pass %d: %d repeat misses on the CPU, %d over the link: want both (the host tier holds some)", pass, cpuN, linkN)
		}
		if int64(apart-a0) != cpuN {
			t.Errorf("pass %d: %d of the CPU's %d experts computed apart: want all", pass, apart-a0, cpuN)
		}
	}
	checkGreedy(t, m, g)
}

// stepEach feeds ids a token at a time (one-token steps, where the miss
// rank takes its share) and returns the last step's logits.
func stepEach(t *testing.T, s *Session, ids []int) []float32 {
	t.Helper()
	var lg []float32
	for _, id := range ids {
		var err error
		if lg, err = s.Forward([]int{id}); err != nil {
			t.Fatal(err)
		}
	}
	return lg
}

// TestCPUMissesPromptStays: a prompt's repeat misses stay on rank 0 (the
// CPU's work on an expert grows with the prompt's tokens, the link's copy
// does not), while the one-token steps after it give the miss rank its
// share.
func TestCPUMissesPromptStays(t *testing.T) {
	g := readGolden(t, "bf16")
	tier := &combTier{holdTier: newHoldTier(evenExperts)}
	mb := cpu.New(cpu.Options{Threads: 2})
	t.Cleanup(func() { mb.Close(); tier.Close() })
	m := open(t, "hf", 16, 0, Options{Backend: tier, MissBackend: mb, MissShare: 1})
	ids := g.i64["input_ids"]
	forwardAll(t, m, ids) // cold: every expert's first miss
	st0, tb0 := m.ExpertStats(), tier.binds
	forwardAll(t, m, ids) // warm prompt: the odd experts are repeat misses
	st := m.ExpertStats()
	if st.MissRank != st0.MissRank || tier.binds == tb0 {
		t.Errorf("warm prompt: %d experts on the miss rank, %d copied: want none on the CPU, all copied", st.MissRank-st0.MissRank, tier.binds-tb0)
	}
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stepEach(t, s, ids)
	if m.ExpertStats().MissRank == st.MissRank {
		t.Error("one-token steps: no expert on the miss rank")
	}
}

// primeCounter is a CPU miss backend that counts its primes.
type primeCounter struct {
	*cpu.Backend
	primes int
}

func (p *primeCounter) Prime(d time.Duration) {
	p.primes++
	p.Backend.Prime(d)
}

// TestCPUMissesPrimed: with Options.MissPrime the miss rank is primed once
// a layer of each one-token step (every layer of the fixture is MoE) and
// never for the prompt, and the logits are the unprimed run's bits;
// without it, never.
func TestCPUMissesPrimed(t *testing.T) {
	g := readGolden(t, "bf16")
	var logits [2][]float32
	for i, prime := range []time.Duration{0, time.Millisecond} {
		tier := &combTier{holdTier: newHoldTier(evenExperts)}
		mb := &primeCounter{Backend: cpu.New(cpu.Options{Threads: 2})}
		t.Cleanup(func() { mb.Close(); tier.Close() })
		m := open(t, "hf", 16, 0, Options{Backend: tier, MissBackend: mb, MissShare: 0.5, HostCache: 1 << 30, MissPrime: prime})
		logits[i] = decodeLogits(t, m, g)
		steps := len(g.i64["generated_ids"]) // decodeLogits feeds each
		want := 0
		if prime > 0 {
			want = steps * m.Config.NumHiddenLayers
		}
		if mb.primes != want {
			t.Errorf("MissPrime %v: %d primes over %d one-token steps of %d layers, want %d", prime, mb.primes, steps, m.Config.NumHiddenLayers, want)
		}
	}
	if !slices.Equal(logits[0], logits[1]) {
		t.Error("the primed run's logits differ from the unprimed run's")
	}
}
