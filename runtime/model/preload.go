package model

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Preloading fills the GPU tiers before the first token, as llama.cpp's -ngl 99 loads its
// weights at start. Without it a tier fills on the first tokens' misses, so a prompt timed
// "with everything resident" paid every expert's first read from disk (issue 13).

// PreloadOptions configure Model.Preload.
type PreloadOptions struct {
	// Load ([layer][expert] picks, as ExpertLoad returns or a routing
	// trace's counts) picks which experts a tier too small for them all
	// takes: the most picked of each layer. nil takes the model's own
	// counts when it has run, else the lowest ids.
	Load [][]int64
	// Progress, when set, is called after each expert bound with the
	// experts done and the total to bind.
	Progress func(done, total int)
}

// PreloadStats is what Preload put into the GPU tiers.
type PreloadStats struct {
	Experts int   // experts the tiers hold after the preload
	Bytes   int64 // the tier memory they take, at most
	Total   int   // the routed experts of the devices with a tier: all would fit in a tier this large
	// Unheld counts experts the budget had room for but a tier bound
	// uncached: the device had less free memory than the budget assumed.
	Unheld int
	// HostExperts went into the host tier (exclusive tiers, demote.go):
	// the experts the GPU tier left out, as many as the host tier holds.
	HostExperts int
}

// Preload reads routed experts into the GPU tier of the device that
// computes them (ranks without a tier are skipped), checksumming each as a
// first read is, then, with exclusive tiers, the rest into the host tier
// (preloadhost.go). A tier too small for every expert gets as many as its
// budget holds, shared evenly over the layers, so that nothing Preload
// binds is evicted by Preload itself; the budget is counted from empty, so
// call it before the first step. A layer goes in whole or not at all: on a
// damaged block or a cancel of ctx (checked between experts), every expert
// of that layer is dropped again and the error returned (with zero
// stats); earlier layers stay.
func (m *Model) Preload(ctx context.Context, o PreloadOptions) (PreloadStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return PreloadStats{}, errClosed
	}
	load := o.Load
	if load == nil {
		load = m.load
	}
	plan, st, err := m.preloadPlan(load)
	if err != nil {
		return PreloadStats{}, err
	}
	_, excl := m.exclusiveTiers()
	planned, done := st.Experts, 0
	if excl {
		for _, ids := range m.hostPlan(plan, load) {
			planned += len(ids)
		}
	}
	for l, ids := range plan {
		if len(ids) == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return PreloadStats{}, err
		}
		err := m.preloadLayer(ctx, l, ids, func() {
			done++
			if o.Progress != nil {
				o.Progress(done, planned)
			}
		})
		if err != nil {
			return PreloadStats{}, err
		}
		held := m.heldInTier(l, ids)
		st.Unheld += len(ids) - held
	}
	st.Experts -= st.Unheld
	st.Bytes = int64(st.Experts) * m.experts.tierEntryBytes()
	if excl {
		st.HostExperts = m.preloadHost(ctx, plan, load, func() {
			done++
			if o.Progress != nil {
				o.Progress(done, planned)
			}
		})
		if err := ctx.Err(); err != nil {
			return PreloadStats{}, err
		}
	}
	return st, nil
}

// heldInTier counts the experts ids of layer l their rank's tier holds: a
// tier binds an expert uncached when its device runs out of memory before
// its budget does, and Preload reports what is held, not what was bound.
func (m *Model) heldInTier(l int, ids []int) int {
	rankOf := m.expertRanks(l)
	held := 0
	for _, id := range ids {
		rk := rankOf(id)
		ts, ok := rk.cache.CachedExpert(l, id)
		if !ok {
			continue
		}
		held++
		for _, t := range ts {
			_ = rk.be.Release(t) // a held expert's tensors: releasing only unpins them
		}
	}
	return held
}

// preloadPlan lists the experts of each layer to preload: on each rank
// with a tier, as many as its budget holds at tierEntryBytes each, shared
// evenly over the layers, the most loaded first (ties: the lower id).
func (m *Model) preloadPlan(load [][]int64) ([][]int, PreloadStats, error) {
	var st PreloadStats
	L, E := len(m.layers), m.Config.NumExperts
	if load != nil && (len(load) != L || slices.ContainsFunc(load, func(r []int64) bool { return len(r) != E })) {
		return nil, st, fmt.Errorf("model: a preload load table of %d layers, want %d layers × %d experts", len(load), L, E)
	}
	entry := m.experts.tierEntryBytes()
	plan := make([][]int, L)
	tiers := 0
	for d := range m.ranks {
		rk := &m.ranks[d]
		budget := rk.budget
		if d == 0 {
			budget = m.cacheBudget
		}
		if rk.cache == nil || budget <= 0 {
			continue
		}
		tiers++
		owned := make([][]int, L)
		want := make([]int, L)
		for l := range L {
			owner := m.owner(l)
			for id := range m.Config.LayerExperts(l) {
				if (owner == nil && d == 0) || (owner != nil && owner[id] == d) {
					owned[l] = append(owned[l], id)
				}
			}
			if load != nil {
				slices.SortStableFunc(owned[l], func(a, b int) int { return cmp.Compare(load[l][b], load[l][a]) })
			}
			want[l] = len(owned[l])
			st.Total += want[l]
		}
		for l, n := range share(int(budget/entry), want) {
			plan[l] = append(plan[l], owned[l][:n]...)
			st.Experts += n
		}
	}
	if tiers == 0 {
		return nil, st, errors.New("model: no GPU tier to preload into: the backend keeps none, or its budget is 0")
	}
	return plan, st, nil
}

// share splits n places over layers that want want[l] each, as evenly as
// the wants allow: a layer that wants less than its share takes what it
// wants and leaves the rest to the others; a remainder that does not
// divide goes to the first layers.
func share(n int, want []int) []int {
	got := make([]int, len(want))
	for n > 0 {
		open := 0
		for l := range want {
			if got[l] < want[l] {
				open++
			}
		}
		if open == 0 {
			break
		}
		each := max(n/open, 1)
		for l := range want {
			g := min(each, want[l]-got[l], n)
			got[l] += g
			n -= g
		}
	}
	return got
}

// tierEntryBytes bounds what one expert takes in a GPU tier: each part of
// each projection in a slot of its own, aligned to 256 bytes (the CUDA
// tier's layout), so that budget/tierEntryBytes experts fit in the budget
// whatever padding a tier adds up to that.
func (r *expertReader) tierEntryBytes() int64 {
	var n int64
	for _, p := range r.proj {
		for _, s := range p.Spans() {
			n += (s.Span.Size + 255) &^ 255
		}
	}
	return max(n, 1)
}

// preloadLayer reads layer l's experts ids and binds each into its rank's
// tier, calling each after each bind. On any error (a read, a checksum,
// ctx) it drops every expert of the layer it bound.
func (m *Model) preloadLayer(ctx context.Context, l int, ids []int, each func()) error {
	rankOf := m.expertRanks(l)
	var bound []int
	// Each expert's tensors are released after the next one's bind
	// (streamStay's late), so that its copy is queued before Release
	// waits for this one's.
	var held []backend.Tensor
	var heldBe backend.Backend
	release := func() error {
		var errs []error
		for _, t := range held {
			errs = append(errs, heldBe.Release(t))
		}
		held = nil
		return errors.Join(errs...)
	}
	var lateErr error
	err := m.experts.streamStay(l, ids, nil, nil, func(id int, w *[3]backend.Weight) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		rk := rankOf(id)
		ts, err := rk.cache.BindExpert(l, id, w[:])
		if err != nil {
			return fmt.Errorf("model: layer %d expert %d: binding into the GPU tier: %w", l, id, err)
		}
		bound = append(bound, id)
		if err := release(); err != nil {
			return err
		}
		held, heldBe = ts, rk.be
		each()
		return nil
	}, func() { lateErr = release() })
	err = errors.Join(err, lateErr)
	// The checks beside the binds end before the tier is used; a damaged
	// expert leaves it (settleChecks), and with it the rest of its layer.
	if err = errors.Join(m.settleChecks(), err); err == nil {
		return nil
	}
	for _, id := range bound {
		if derr := rankOf(id).cache.DropExpert(l, id); derr != nil {
			err = errors.Join(err, fmt.Errorf("model: dropping layer %d expert %d from the GPU tier: %w", l, id, derr))
		}
	}
	return err
}

// expertRanks returns the rank that computes each expert of layer l:
// rank 0 without a placement, else the placement's owner.
func (m *Model) expertRanks(l int) func(id int) *rank {
	owner := m.owner(l)
	return func(id int) *rank {
		if owner == nil {
			return &m.ranks[0]
		}
		return &m.ranks[owner[id]]
	}
}
