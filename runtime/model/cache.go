package model

import (
	"fmt"

	"github.com/fmoe/fmoe/runtime/backend"
)

// GPU expert cache budgets for Options.GPUCache besides a size in bytes.
const (
	GPUCacheAuto int64 = 0  // free device memory less what the context needs, with a margin
	GPUCacheOff  int64 = -1 // no cache: every expert is read and copied each step
)

// setupCache gives a backend with an expert cache (backend.ExpertCache:
// CUDA) its budget. With the budget automatic it is the device's free
// memory less the KV caches at the configured context, the activations of
// a prefill chunk and the miss path's slots, and a margin; a budget asked
// for is refused when it passes that.
func (m *Model) setupCache(budget int64) error {
	ec, ok := m.be.(backend.ExpertCache)
	if !ok {
		if budget > 0 {
			return fmt.Errorf("model: a GPU expert cache was asked for, but backend %s keeps none (the OS page cache caches experts)", m.be.Name())
		}
		return nil
	}
	if budget == GPUCacheOff {
		return ec.SetExpertCache(0, 0)
	}
	free, total, err := ec.DeviceMemory()
	if err != nil {
		return fmt.Errorf("model: GPU expert cache: %w", err)
	}
	need := m.contextBytes()
	margin := max(1<<30, total/32)
	avail := free - need - margin
	switch {
	case budget == GPUCacheAuto:
		budget = max(avail, 0)
	case budget > avail:
		return fmt.Errorf("model: a GPU expert cache of %s does not fit: the device has %s free of %s, less %s for the KV caches at %d positions and activations and a %s margin, leaves %s",
			gib(budget), gib(free), gib(total), gib(need), m.maxCtx, gib(margin), gib(max(avail, 0)))
	}
	m.cache, m.cacheBudget = ec, budget
	if budget == 0 {
		m.cache = nil
	}
	if len(m.ranks) > 0 {
		// Rank 0 is the model's backend: its tier is this one, also when
		// set again after Open (BenchmarkTieredDecode does).
		m.ranks[0].cache = m.cache
	}
	return ec.SetExpertCache(budget, len(m.layers)*m.K)
}

// contextBytes is the device memory a session needs beside the weights at
// the configured context: KV caches, recurrent states, the activations of
// a prefill chunk (with ForwardAll's logits) and the slots of K uncached
// experts twice over.
func (m *Model) contextBytes() int64 {
	c := &m.Config
	var kv, lin int64
	for _, L := range m.layers {
		switch {
		case L.cacheW[0] > 0: // DeepSeek-V3's latent cache
			kv += int64(m.maxCtx) * int64(L.cacheW[0]+L.cacheW[1]) * 4
		case L.full:
			kv += 2 * int64(m.maxCtx) * int64(c.NumKeyValueHeads*c.HeadDim) * 4
		default:
			lin++
		}
	}
	kv += mlaScratchBytes(m)
	states := lin * int64((c.LinearConvKernelDim-1)*c.ConvDim()+c.LinearNumValueHeads*c.LinearKeyHeadDim*c.LinearValueHeadDim) * 4
	act := int64(scratchFloats(m, m.chunk)+m.chunk*c.VocabSize) * 4
	slots := 2 * int64(m.K) * m.experts.set.Stride
	return kv + states + act + slots
}

func gib(b int64) string { return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30)) }

// CacheBudget is the GPU expert cache's budget in bytes (0: no cache).
func (m *Model) CacheBudget() int64 { return m.cacheBudget }

// ExpertStats counts the routed experts a model computed since Open: Uses
// (one per distinct expert of a step's layer), of which GPUHits came from
// the GPU tier, and DeviceBytes copied host-to-device for the others on a
// device backend (its GPU tier on or off).
type ExpertStats struct {
	Uses, GPUHits, DeviceBytes int64
	HostHits                   int64 // GPU-tier misses the host tier served
	MissRank                   int64 // GPU-tier misses computed on Options.MissBackend
	DevLayers                  int64 // layers of one-token steps routed on the device (devroute.go)
	// Prefetched counts experts copied ahead for the next layer
	// (Options.Prefetch), PrefetchUsed the GPU-tier hits among them: the
	// misses they saved (counted in GPUHits too).
	Prefetched, PrefetchUsed int64
}

// ExpertStats returns the counters.
func (m *Model) ExpertStats() ExpertStats {
	st := m.stats
	st.HostHits = m.experts.hostHits
	return st
}
