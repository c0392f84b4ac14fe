package model

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Phase is one part of a forward step that Timing accounts for.
type Phase int

const (
	PhaseEmbed         Phase = iota // token embedding lookup
	PhaseNorm                       // input and post-attention RMSNorms
	PhaseAttention                  // full-attention mixer (projections, RoPE, attention, o_proj)
	PhaseDeltaNet                   // GatedDeltaNet mixer
	PhaseRouting                    // router matmul, logits read-back, top-K
	PhaseExpertWait                 // compute blocked waiting for expert preads
	PhaseExpertCompute              // routed experts' matmuls (incl. Bind/Release)
	PhaseSharedExpert               // shared expert and its gate
	PhaseCombine                    // weighted sum of the experts and the residual add
	// PhaseExchange is the hidden state's exchange between devices (--gpus:
	// broadcast and all-reduce); with GPUs it also holds the other devices'
	// expert compute still running, which the all-reduce waits for.
	PhaseExchange
	PhaseHead // final norm, lm_head and logits read-back
	NumPhases
)

var phaseNames = [NumPhases]string{
	"embed", "norms", "attention", "deltanet", "routing",
	"expert_io_wait", "expert_compute", "shared_expert", "combine", "exchange", "lm_head",
}

func (p Phase) String() string {
	if p < 0 || p >= NumPhases {
		return fmt.Sprintf("Phase(%d)", int(p))
	}
	return phaseNames[p]
}

// Timing accumulates where a session's forward time goes, for prefill and
// decode separately. Set Session.Timing to a non-nil *Timing to collect it;
// nil (the default) costs one pointer test per phase and no clock reads.
//
// A step of one token after the first position is decode; every other step
// (the prompt, however long, and a one-token prompt at position 0) is
// prefill. On a backend whose ops run asynchronously each phase ends with a
// one-value read-back so that its time is its own; that costs a device
// sync per phase, so timing perturbs a GPU run more than a CPU one.
type Timing struct {
	Prefill, Decode PhaseTiming

	Layers     int   // decoder layers of the model
	FullLayers int   // of which full attention (the rest GatedDeltaNet)
	MoELayers  int   // of which with routed experts (the rest dense MLPs)
	K          int   // routed experts per token
	Stride     int64 // bytes per expert read
	KVBytes    int64 // KV cache bytes per position, all layers (MLA: the latent and the rotary key)
	// Residency says how PhaseTiming.CachedReads was measured: "mincore",
	// or why it was not.
	Residency string
	// GPUCache and HostCache are the tiers' budgets in bytes (0: none);
	// GPUCache sums every device's.
	GPUCache, HostCache int64
	// Devices is the number of devices the routed experts are split over.
	Devices int
	// CPUMisses says the GPU tier's repeat misses are computed on the
	// CPU (Options.MissBackend).
	CPUMisses bool
	// Share, with an automatic share (Options.MissAuto), is where it
	// stood when the last step began.
	Share *ShareReport
	// Device says rank 0 computes in device memory, so that the experts
	// it does not hold cross the host-to-device link.
	Device bool
	// Prefetch is Options.PrefetchAhead when Options.Prefetch is on, else 0.
	Prefetch int
}

// PhaseTiming is the sum over the steps of one kind.
type PhaseTiming struct {
	Steps  int           // forward steps (chunks)
	Tokens int           // tokens fed
	Wall   time.Duration // wall time of the steps, start to logits
	Time   [NumPhases]time.Duration

	Samples    int           // tokens sampled by Generate after steps of this kind
	SampleTime time.Duration // time Generate spent sampling them

	ExpertReads int64         // preads of one expert block
	ExpertBytes int64         // bytes they read
	ReadTime    time.Duration // summed pread latency (reads overlap, so this exceeds their wall time)
	// ProbedReads were checked for page-cache residency just before the
	// pread; CachedReads of them had every page resident, and
	// CachedPages/ProbedPages is the resident share by bytes.
	ProbedReads, CachedReads int64
	ProbedPages, CachedPages int64

	// ExpertUses counts routed experts computed (one per distinct expert
	// of a step's layer); GPUHits of them came from the GPU tier, and
	// DeviceBytes were copied host-to-device for the rest (a device
	// backend only, with its GPU tier on or off).
	ExpertUses, GPUHits, DeviceBytes int64
	// HostHits of the GPU tier's misses were served by the host tier
	// (Options.HostCache) with no read.
	HostHits int64
	// MissRank of the GPU tier's misses were computed on the CPU
	// (Options.MissBackend) instead of copied.
	MissRank int64
	// DevLayers of the steps' MoE layers were routed on the device, with
	// every expert in the GPU tier (devroute.go); MoELayers in all.
	DevLayers, MoELayers int64
	// Prefetched experts were copied into the GPU tier ahead of their
	// layer (Options.Prefetch); PrefetchUsed of them were then hits.
	Prefetched, PrefetchUsed int64
}

// Accounted is the sum of the phases; it falls short of Wall only by the
// bookkeeping between phases.
func (p *PhaseTiming) Accounted() time.Duration {
	var d time.Duration
	for _, t := range p.Time {
		d += t
	}
	return d
}

// CacheShare is the fraction of probed expert reads that were served
// entirely by the page cache, or -1 when none was probed.
func (p *PhaseTiming) CacheShare() float64 {
	if p.ProbedReads == 0 {
		return -1
	}
	return float64(p.CachedReads) / float64(p.ProbedReads)
}

// read adds one expert read's statistics.
func (p *PhaseTiming) read(e *expert) {
	p.ExpertReads++
	p.ExpertBytes += e.n
	p.ReadTime += e.dur
	if e.pages > 0 {
		p.ProbedReads++
		p.ProbedPages += int64(e.pages)
		p.CachedPages += int64(e.resident)
		if e.resident == e.pages {
			p.CachedReads++
		}
	}
}

// timer is a session's clock while Timing is on: each lap charges the time
// since the previous one to a phase, so the phases tile the step.
type timer struct {
	p    *PhaseTiming // nil: timing off
	last time.Time
	sync backend.Buffer // one value read back to end asynchronous ops
	one  [1]float32
}

// lap charges the time since the last lap to ph. It is a no-op when
// timing is off, so call sites need no guard.
func (s *Session) lap(ph Phase) {
	tm := &s.tm
	if tm.p == nil {
		return
	}
	if tm.sync != nil {
		// An error here would also fail the step's next op; timing must
		// not change which error the caller sees.
		_ = s.m.be.Read(tm.one[:], tm.sync)
	}
	now := time.Now()
	tm.p.Time[ph] += now.Sub(tm.last)
	tm.last = now
}

// startTiming begins timing a step of T tokens, or does nothing when
// Session.Timing is nil.
func (s *Session) startTiming(T int, decode bool) {
	t := s.Timing
	if t == nil {
		s.tm.p = nil
		return
	}
	m := s.m
	t.Layers, t.K = len(m.layers), m.K
	t.FullLayers, t.MoELayers = 0, 0
	for i := range m.layers {
		if m.layers[i].full {
			t.FullLayers++
		}
		if m.Config.LayerExperts(i) > 0 {
			t.MoELayers++
		}
	}
	t.Stride = m.experts.set.Stride
	t.KVBytes = 0
	for i := range s.layers {
		t.KVBytes += int64(s.layers[i].kw+s.layers[i].vw) * 4
	}
	t.Residency = m.experts.residency()
	t.GPUCache, t.HostCache, t.Devices, t.Device = m.tierBudget(), m.hostBudget, len(m.ranks), m.ranks[0].device
	if m.miss > 0 {
		t.Devices, t.CPUMisses = t.Devices-1, true
	}
	if t.Share = nil; m.tune != nil {
		r := m.tune.report()
		t.Share = &r
	}
	if t.Prefetch = 0; m.prefetch {
		t.Prefetch = m.prefetchAhead
	}
	s.tm.p = &t.Prefill
	if decode {
		s.tm.p = &t.Decode
	}
	s.tm.p.Steps++
	s.tm.p.Tokens += T
	// Made per step because ensure may have replaced the scratch. View
	// fails only for a bad range; without a sync buffer the phases of an
	// asynchronous backend just blur into each other.
	s.tm.sync, _ = m.be.View(s.sc.h, 0, 1)
	s.tm.last = time.Now()
}

// stopTiming ends the step started by startTiming.
func (s *Session) stopTiming(start time.Time) {
	if s.tm.p != nil {
		s.tm.p.Wall += time.Since(start)
		s.tm.p = nil
	}
}

// Report writes the breakdown in the spirit of the flash-moe seed's
// --timing: milliseconds per token, per layer for the in-layer phases.
func (t *Timing) Report(w io.Writer) {
	lin := t.Layers - t.FullLayers
	ph := [2]*PhaseTiming{&t.Prefill, &t.Decode}
	fmt.Fprintf(w, "[timing] %d layers (%d full attention, %d GatedDeltaNet), K=%d, expert block %d B, KV cache %d B per token\n",
		t.Layers, t.FullLayers, lin, t.K, t.Stride, t.KVBytes)
	for i, name := range [2]string{"prefill", "decode"} {
		p := ph[i]
		if p.Tokens == 0 {
			fmt.Fprintf(w, "[timing] %s: no steps\n", name)
			continue
		}
		fmt.Fprintf(w, "[timing] %s: %d tokens in %d step(s), %.3f s forward: %.2f tok/s (sampling adds %.3f ms/token)\n",
			name, p.Tokens, p.Steps, p.Wall.Seconds(), float64(p.Tokens)/p.Wall.Seconds(),
			ms(p.SampleTime)/float64(max(p.Samples, 1)))
	}
	// per token per layer of the kind the phase runs in
	perLayer := func(p *PhaseTiming, d time.Duration, layers int) string {
		if p.Tokens == 0 || layers == 0 {
			return "-"
		}
		return fmt.Sprintf("%.3f", ms(d)/float64(p.Tokens)/float64(layers))
	}
	perTok := func(p *PhaseTiming, d time.Duration) string {
		if p.Tokens == 0 {
			return "-"
		}
		return fmt.Sprintf("%.3f", ms(d)/float64(p.Tokens))
	}
	row := func(name string, f func(p *PhaseTiming) string, note string) {
		fmt.Fprintf(w, "  %-26s %10s %10s  %s\n", name, f(ph[0]), f(ph[1]), note)
	}
	fmt.Fprintf(w, "[timing] per-layer breakdown (ms per token per layer)\n  %-26s %10s %10s\n", "", "prefill", "decode")
	row("attention", func(p *PhaseTiming) string { return perLayer(p, p.Time[PhaseAttention], t.FullLayers) },
		"per full-attention layer")
	row("deltanet", func(p *PhaseTiming) string { return perLayer(p, p.Time[PhaseDeltaNet], lin) },
		"per GatedDeltaNet layer")
	for _, q := range []Phase{PhaseNorm, PhaseRouting, PhaseExpertWait, PhaseExpertCompute, PhaseSharedExpert, PhaseCombine} {
		row(q.String(), func(p *PhaseTiming) string { return perLayer(p, p.Time[q], t.Layers) }, "")
	}
	if t.Devices > 1 {
		row(PhaseExchange.String(), func(p *PhaseTiming) string { return perLayer(p, p.Time[PhaseExchange], t.Layers) },
			fmt.Sprintf("between the %d devices", t.Devices))
	} else if t.CPUMisses {
		row("cpu_share_wait", func(p *PhaseTiming) string { return perLayer(p, p.Time[PhaseExchange], t.Layers) },
			"the CPU's share (--cpu-experts) still running when the GPU's was done, and its rows; well above 0: lower the share")
	}
	if t.MoELayers != t.Layers {
		fmt.Fprintf(w, "  (%d of the %d layers are dense: no routing or expert reads; their MLP counts as shared_expert)\n", t.Layers-t.MoELayers, t.Layers)
	}
	row("layer_total", func(p *PhaseTiming) string { return perLayer(p, layerTime(p), t.Layers) }, "mean over all layers")
	fmt.Fprintf(w, "[timing] per token (ms)\n")
	row("embed", func(p *PhaseTiming) string { return perTok(p, p.Time[PhaseEmbed]) }, "")
	row("lm_head", func(p *PhaseTiming) string { return perTok(p, p.Time[PhaseHead]) }, "incl. final norm")
	row("layers", func(p *PhaseTiming) string { return perTok(p, layerTime(p)) }, "")
	row("unaccounted", func(p *PhaseTiming) string { return perTok(p, p.Wall-p.Accounted()) }, "")
	row("total", func(p *PhaseTiming) string { return perTok(p, p.Wall) }, "")
	fmt.Fprintf(w, "[timing] expert reads\n")
	row("MB read per token", func(p *PhaseTiming) string {
		if p.Tokens == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", float64(p.ExpertBytes)/1e6/float64(p.Tokens))
	}, fmt.Sprintf("(decode: K x layers with experts x block = %.1f MB)", float64(int64(t.K*t.MoELayers)*t.Stride)/1e6))
	row("reads per token", func(p *PhaseTiming) string {
		if p.Tokens == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", float64(p.ExpertReads)/float64(p.Tokens))
	}, "")
	row("mean pread (ms)", func(p *PhaseTiming) string {
		if p.ExpertReads == 0 {
			return "-"
		}
		return fmt.Sprintf("%.3f", ms(p.ReadTime)/float64(p.ExpertReads))
	}, "one block, reads overlap")
	row("page-cache hit, reads", func(p *PhaseTiming) string { return pct(p.CacheShare()) },
		"every page resident before the pread ("+t.Residency+")")
	row("page-cache hit, bytes", func(p *PhaseTiming) string {
		if p.ProbedPages == 0 {
			return "-"
		}
		return pct(float64(p.CachedPages) / float64(p.ProbedPages))
	}, "")
	row("MB from disk per token", func(p *PhaseTiming) string {
		if p.ProbedPages == 0 || p.Tokens == 0 {
			return "-"
		}
		miss := float64(p.ProbedPages-p.CachedPages) / float64(p.ProbedPages)
		return fmt.Sprintf("%.1f", miss*float64(p.ExpertBytes)/1e6/float64(p.Tokens))
	}, "the reads' bytes the page cache did not hold")
	if t.GPUCache == 0 && t.HostCache == 0 && !t.Device {
		return // the CPU and Metal without a host tier: the page cache, above
	}
	fmt.Fprintf(w, "[timing] %s\n", t.tiersLine())
	gpuTier := t.GPUCache > 0
	rowIf := func(on bool, name string, f func(p *PhaseTiming) string, note string) {
		if on {
			row(name, f, note)
		}
	}
	rowIf(gpuTier, "GPU-tier hit, experts", func(p *PhaseTiming) string {
		if p.ExpertUses == 0 {
			return "-"
		}
		return pct(float64(p.GPUHits) / float64(p.ExpertUses))
	}, "computed from device memory, no read and no copy")
	rowIf(t.HostCache > 0, "host-tier hit, experts", func(p *PhaseTiming) string {
		if p.ExpertUses == 0 {
			return "-"
		}
		return pct(float64(p.HostHits) / float64(p.ExpertUses))
	}, hostNote(t.Device))
	if t.CPUMisses {
		row("computed on the CPU, experts", func(p *PhaseTiming) string {
			if p.ExpertUses == 0 {
				return "-"
			}
			return pct(float64(p.MissRank) / float64(p.ExpertUses))
		}, "of all experts: repeat GPU-tier misses computed on the CPU (--cpu-experts), no copy")
	}
	if r := t.Share; r != nil {
		fmt.Fprintf(w, "  %-26s %21.2f  share of the repeat misses now, from %d layers: CPU %.3f ms an expert, link %.3f (--cpu-experts auto)\n",
			"cpu share (auto)", r.Share, r.Layers, ms(r.CPU), ms(r.Link))
		if r.Fitted {
			fmt.Fprintf(w, "  %-26s %21s  partly held layers split by fits: CPU %.3f ms a layer + %.3f an expert, link %.3f + %.3f (FMOE_CPU_TUNE=affine)\n",
				"cpu split (affine)", "", ms(r.CPUFixed), ms(r.CPUPer), ms(r.LinkFixed), ms(r.LinkPer))
		}
	}
	rowIf(gpuTier, "routed on the GPU, layers", func(p *PhaseTiming) string {
		if p.MoELayers == 0 {
			return "-"
		}
		return pct(float64(p.DevLayers) / float64(p.MoELayers))
	}, "MoE layers with every expert in the GPU tier: no host round trip")
	if t.Prefetch > 0 {
		row("prefetched, experts", func(p *PhaseTiming) string {
			if p.ExpertUses == 0 {
				return "-"
			}
			return pct(float64(p.Prefetched) / float64(p.ExpertUses))
		}, fmt.Sprintf("of all experts: predicted %d layer(s) ahead and copied from the host tier", t.Prefetch))
		row("prefetches used", func(p *PhaseTiming) string {
			if p.Prefetched == 0 {
				return "-"
			}
			return pct(float64(p.PrefetchUsed) / float64(p.Prefetched))
		}, "of the prefetched: GPU-tier hits they made (the rest were wrong guesses)")
	}
	rowIf(t.Device || gpuTier, "MB over PCIe per token", func(p *PhaseTiming) string {
		if p.Tokens == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", float64(p.DeviceBytes)/1e6/float64(p.Tokens))
	}, "host-to-device copies of the misses")
}

func hostNote(device bool) string {
	if device {
		return "of all experts: GPU-tier misses bound from pinned host memory, no read"
	}
	return "of all experts: computed from the host tier's memory, no read"
}

// tiersLine names the expert tiers and their budgets: the report's
// header over their hits.
func (t *Timing) tiersLine() string {
	var parts []string
	switch {
	case t.GPUCache > 0 && t.Devices > 1:
		parts = append(parts, fmt.Sprintf("GPU tier (%s budget over %d devices)", gib(t.GPUCache), t.Devices))
	case t.GPUCache > 0:
		parts = append(parts, fmt.Sprintf("GPU tier (%s budget)", gib(t.GPUCache)))
	case t.Device:
		parts = append(parts, "GPU tier (off: every expert crosses the link)")
	}
	if t.HostCache > 0 {
		parts = append(parts, fmt.Sprintf("host tier (%s budget)", gib(t.HostCache)))
	}
	return strings.Join(parts, ", ")
}

// layerTime is the time spent inside the decoder layers.
func layerTime(p *PhaseTiming) time.Duration {
	return p.Accounted() - p.Time[PhaseEmbed] - p.Time[PhaseHead]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func pct(f float64) string {
	if f < 0 {
		return "-"
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", 100*f), ".0") + "%"
}

// sampleStart and sampleDone time one Sample call of Generate; the first
// token is sampled from the prompt's logits, so it counts to prefill.
func (s *Session) sampleStart() time.Time {
	if s.Timing == nil {
		return time.Time{}
	}
	return time.Now()
}

func (s *Session) sampleDone(t0 time.Time, first bool) {
	if s.Timing == nil || t0.IsZero() {
		return
	}
	p := &s.Timing.Decode
	if first {
		p = &s.Timing.Prefill
	}
	p.Samples++
	p.SampleTime += time.Since(t0)
}
