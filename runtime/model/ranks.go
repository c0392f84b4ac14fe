package model

import (
	"errors"
	"fmt"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/parallel"
)

// rank is one device of the MoE block. Rank 0 is the model's backend and
// runs everything but the other ranks' experts: the non-expert weights live
// there only (docs/scaling.md says why none are replicated). Ranks 1… hold
// routed experts only (Options.Devices).
type rank struct {
	be     backend.Backend
	cache  backend.ExpertCache // its GPU tier while it has a budget, or nil
	budget int64               // that tier's budget (ranks 1…; rank 0's is Model.cacheBudget)
	// device: the rank computes in device memory (a backend with a GPU
	// tier, on or off), so every expert it binds from the host is copied.
	device bool
}

func newRank(be backend.Backend) rank {
	_, dev := be.(backend.ExpertCache)
	return rank{be: be, device: dev}
}

// setupRanks opens the ranks, their collective and the placement of the
// experts on them; one device is one rank, whose collective does nothing.
func (m *Model) setupRanks(opts Options) error {
	m.ranks = []rank{newRank(m.be)}
	m.ranks[0].cache = m.cache
	bes := []backend.Backend{m.be}
	for i, be := range opts.Devices {
		if be == nil {
			return fmt.Errorf("model: device %d is nil", i+1)
		}
		for _, o := range bes {
			if o == be {
				return fmt.Errorf("model: device %d (%s) is given twice: each rank needs a backend of its own", i+1, be.Name())
			}
		}
		bes = append(bes, be)
		m.ranks = append(m.ranks, newRank(be))
	}
	if err := m.setupMissRank(opts, &bes); err != nil {
		return err
	}
	n, c := len(bes), &m.Config
	m.coll = opts.Collective
	if m.coll == nil {
		var err error
		if m.coll, err = parallel.NewLocal(bes); err != nil {
			return err
		}
	}
	if m.coll.Size() != n {
		return fmt.Errorf("model: the collective joins %d ranks, the model runs on %d devices", m.coll.Size(), n)
	}
	m.place = opts.Placement
	if m.place == nil && n > 1 && m.miss == 0 {
		var err error
		if m.place, err = parallel.Partition(parallel.Uniform(c.NumHiddenLayers, c.NumExperts), n); err != nil {
			return err
		}
	}
	if m.place != nil {
		if m.place.Devices != n {
			return fmt.Errorf("model: the expert placement is for %d devices, the model runs on %d", m.place.Devices, n)
		}
		if err := m.place.Check(c.NumHiddenLayers, c.NumExperts); err != nil {
			return fmt.Errorf("model: %w", err)
		}
	}
	return m.setupRankCaches(opts.GPUCache)
}

// setupRankCaches gives each further rank with an expert cache (CUDA) a
// GPU tier: its free memory less the slots of K uncached experts and a
// margin (it holds no KV cache), or the budget asked for, on each device.
// Rank 0's is setupCache's.
func (m *Model) setupRankCaches(budget int64) error {
	for d := 1; d < len(m.ranks); d++ {
		rk := &m.ranks[d]
		ec, ok := rk.be.(backend.ExpertCache)
		if !ok || budget == GPUCacheOff || d == m.miss {
			continue
		}
		free, total, err := ec.DeviceMemory()
		if err != nil {
			return fmt.Errorf("model: device %d: GPU expert cache: %w", d, err)
		}
		avail := free - 2*int64(m.K)*m.experts.set.Stride - max(1<<30, total/32)
		b := budget
		switch {
		case b == GPUCacheAuto:
			b = max(avail, 0)
		case b > avail:
			return fmt.Errorf("model: device %d: a GPU expert cache of %s does not fit in %s free of %s", d, gib(b), gib(free), gib(total))
		}
		if err := ec.SetExpertCache(b, len(m.layers)*m.K); err != nil {
			return fmt.Errorf("model: device %d: %w", d, err)
		}
		if b > 0 {
			rk.cache, rk.budget = ec, b
		}
	}
	return nil
}

// closeRanks drops the further ranks' caches and the collective. The
// devices' backends belong to the caller, as Options.Backend does.
func (m *Model) closeRanks() error {
	var errs []error
	for d := 1; d < len(m.ranks); d++ {
		if c := m.ranks[d].cache; c != nil {
			errs = append(errs, c.SetExpertCache(0, 0))
			m.ranks[d].cache, m.ranks[d].budget = nil, 0
		}
	}
	if m.coll != nil {
		errs = append(errs, m.coll.Close())
	}
	return errors.Join(errs...)
}

// tierBudget is the GPU tiers' budget over every device.
func (m *Model) tierBudget() int64 {
	b := m.cacheBudget
	for _, rk := range m.ranks[min(1, len(m.ranks)):] {
		b += rk.budget
	}
	return b
}

// countPicks adds a layer's picks to the load counts (ExpertLoad).
func (m *Model) countPicks(l int, idx []int) {
	if m.load == nil {
		m.load = parallel.Uniform(len(m.layers), m.Config.NumExperts)
	}
	for _, e := range idx {
		m.load[l][e]++
	}
}

// ExpertLoad returns how often each expert of each layer was routed to
// since Open ([layer][expert]): the measured load parallel.Partition
// balances, for SetPlacement or a later run.
func (m *Model) ExpertLoad() [][]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := parallel.Uniform(len(m.layers), m.Config.NumExperts)
	for l := range m.load {
		copy(out[l], m.load[l])
	}
	return out
}

// SetPlacement moves the routed experts to the ranks p gives, from the
// next step on (experts hold no state between steps; a rank's GPU tier
// keeps what it holds until evicted). p must be for the model's devices.
func (m *Model) SetPlacement(p *parallel.Placement) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	if m.miss > 0 {
		return errors.New("model: no placement with Options.MissBackend: the GPU tier's misses decide each step which rank computes an expert")
	}
	if p == nil || p.Devices != len(m.ranks) {
		return fmt.Errorf("model: a placement must be for the model's %d devices", len(m.ranks))
	}
	if err := p.Check(m.Config.NumHiddenLayers, m.Config.NumExperts); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	m.place = p
	return nil
}

// owner is layer l's placement (nil: every expert on rank 0).
func (m *Model) owner(l int) []int {
	if m.place == nil {
		return nil
	}
	return m.place.Owner[l]
}

// expertBufs are the buffers one rank's experts use, for up to n tokens:
// the normed input, its gathered rows, gate and up, the experts' output
// rows and the rank's partial sum.
type expertBufs struct {
	n                       int
	xn, xg, eg, eu, eo, acc backend.Buffer
}

// rankBufs returns every rank's buffers for T tokens: rank 0's are the
// session's scratch (xn and acc as given), the others' are allocated on
// their devices on first use and grown with the chunk.
func (s *Session) rankBufs(xn, acc backend.Buffer, T int) ([]expertBufs, error) {
	m := s.m
	n := len(m.ranks)
	if len(s.rb) < n {
		s.rb = make([]expertBufs, n)
	}
	s.rb[0] = expertBufs{n: T, xn: xn, xg: s.sc.xg, eg: s.sc.eg, eu: s.sc.eu, eo: s.sc.eo, acc: acc}
	c := &m.Config
	H, I := c.HiddenSize, c.MoeIntermediateSize
	for d := 1; d < n; d++ {
		b, be := &s.rb[d], m.ranks[d].be
		if b.n >= s.sc.n {
			continue
		}
		if err := b.free(be); err != nil {
			return nil, err
		}
		N := s.sc.n // the session's chunk capacity, so a rank grows when the scratch does
		for _, p := range []struct {
			b *backend.Buffer
			n int
		}{{&b.xn, N * H}, {&b.xg, N * H}, {&b.eg, N * m.K * I}, {&b.eu, N * m.K * I}, {&b.eo, N * m.K * H}, {&b.acc, N * H}} {
			var err error
			if *p.b, err = be.Alloc(p.n); err != nil {
				return nil, fmt.Errorf("device %d: %w", d, err)
			}
		}
		b.n = N
	}
	return s.rb[:n], nil
}

func (b *expertBufs) free(be backend.Backend) error {
	var errs []error
	for _, p := range []*backend.Buffer{&b.xn, &b.xg, &b.eg, &b.eu, &b.eo, &b.acc} {
		if *p != nil {
			errs = append(errs, be.Free(*p))
			*p = nil
		}
	}
	b.n = 0
	return errors.Join(errs...)
}

// freeRanks releases the further ranks' buffers (Session.Close).
func (s *Session) freeRanks() error {
	var errs []error
	for d := 1; d < len(s.rb); d++ {
		errs = append(errs, s.rb[d].free(s.m.ranks[d].be))
	}
	return errors.Join(errs...)
}
