// Package model runs the Qwen3.5-MoE forward pass on a backend.Backend over
// a packed model directory (docs/format.md): the non-expert weights are
// mmapped and registered once, the K routed experts of each layer are read
// per step with pread into aligned host buffers (no expert cache in the
// process: the OS page cache is the cache) and bound to the backend.
package model

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/mmap"
	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
	"github.com/fmoe/fmoe/runtime/parallel"
)

// Options configures Open.
type Options struct {
	// Backend runs the compute; nil means a CPU backend with default options.
	// Where it implements backend.HostAllocator the expert read buffers come
	// from it (freed at Close); where it implements backend.HostMapper the
	// weights mapping is handed to it before the weights are registered. A
	// backend the caller passes keeps pointers into the model's mapping:
	// use no tensor of it after Model.Close.
	Backend backend.Backend
	// ExpertsPerToken overrides the config's num_experts_per_tok (0 keeps it).
	ExpertsPerToken int
	// ExpertBits selects the expert set by bit width (0: the pack's own).
	ExpertBits int
	// ReadParallel is the number of concurrent expert preads (0: K).
	ReadParallel int
	// PrefillChunk bounds the tokens of one forward step, and so the size of
	// the activation buffers (0: 512).
	PrefillChunk int
	// MaxContext caps the KV cache (0: the config's max_position_embeddings).
	MaxContext int
	// MLAExpandedMax caps the context a DeepSeek-V3 prompt step attends
	// over in MLA's expanded form (mla.go), and so its scratch: a longer
	// one runs the absorbed LatentAttention (0: MLAExpandedDefault).
	MLAExpandedMax int
	// DirectIO reads experts around the page cache (O_DIRECT on Linux,
	// F_NOCACHE on macOS; an error elsewhere, or where the filesystem
	// refuses it). Every read then costs a disk read: for measuring the
	// disk, or for leaving the cache to other work.
	DirectIO bool
	// LZ4 reads the experts from the LZ4 copy of the selected set
	// (packed_experts_lz4/ beside packed_experts/, made by fmoe-pack lz4;
	// the 2-bit set has its own copy) instead of the raw files, with one
	// decompression per expert: the LZ4 experiment end to end. Open fails
	// when the copy is missing or was made from other weights. Not with
	// DirectIO: the compressed blocks are not block-aligned.
	LZ4 bool
	// GPUCache is the byte budget of the GPU tier of experts, kept in
	// device memory across steps by a backend that offers it
	// (backend.ExpertCache: CUDA). GPUCacheAuto (0) takes the device's
	// free memory less what the context needs (KV caches at MaxContext,
	// activations) and a margin; GPUCacheOff turns it off. A budget past
	// what is available is refused, and so is one on a backend without
	// a cache.
	GPUCache int64
	// HostCache is the byte budget of the host tier of experts (0: none,
	// the OS page cache caches them): buffers from the backend's
	// HostAlloc (CUDA: pinned) that keep what the GPU tier misses, so
	// that a hit is one DMA with no read and no copy. A budget past the
	// memory available is refused; one past the model's experts is cut
	// to them and a few spare slots (CacheBudgets reports the tier's).
	HostCache int64
	// VerifyEveryRead checksums every expert block read, not only the first read of each
	// block in the process: for a disk suspected of going bad under a long-running server.
	VerifyEveryRead bool
	// VerifyBeforeCompute checksums an expert block before it is bound
	// and computed, on the read's critical path, instead of beside its
	// compute (the default; either way a step returns nothing before
	// every check it started has passed): for tests and benchmarks.
	VerifyBeforeCompute bool

	// Devices are further devices (ranks 1…) that compute a share of the
	// routed experts; Backend is rank 0 and runs everything else. Each
	// needs a backend of its own; they stay the caller's (Close them after
	// the model). Experts are read on the host and bound on their rank.
	Devices []backend.Backend
	// Placement says which rank computes each routed expert
	// (parallel.Partition of a trace's or a run's counts); nil spreads
	// each layer's experts evenly by number.
	Placement *parallel.Placement
	// Collective exchanges the hidden state between the ranks once per
	// MoE layer; nil is parallel.Local, through host memory. Close closes
	// it.
	Collective parallel.Collective
	// MissBackend (experimental, a measurement vehicle: issue 12 §2) is
	// a further rank, normally the CPU backend, that computes the routed
	// experts missing rank 0's GPU tier in each one-token step (a prompt's
	// stay on rank 0: shareRepeats says why) while rank 0 computes the
	// hits, instead of copying them to the device
	// (cpumiss.go). It stays the caller's; it excludes Devices and
	// Placement.
	MissBackend backend.Backend
	// MissShare is the share of the repeat misses MissBackend computes,
	// in (0, 1]; the others are copied to rank 0 as without a miss rank,
	// so that the CPU and the host-to-device link work side by side. 0
	// means 1: every repeat miss.
	MissShare float64
	// MissAuto has the share follow the CPUs' and the link's measured
	// rates (sharetune.go), starting from MissShare (0: AutoShareStart).
	MissAuto bool
	// MissPrime (an experiment: fmoe-run's FMOE_CPU_PRIME), when above 0
	// and MissBackend can be primed (cpu.Backend.Prime), has its threads
	// poll for up to that long from the moment a one-token step's layer
	// asks for its routing, so that the share the ids bring finds them
	// awake.
	MissPrime time.Duration
	// MissTask hands a one-token step's share to MissBackend's own
	// threads as one task where it can (cpu.Backend.StartExperts) instead
	// of three ops on a goroutine of the share's own; the outputs are the
	// same bits. fmoe-run sets it (FMOE_CPU_SHARE=ops clears it): 7-8% a
	// token at K=4 and K=10 on an H100 host, 13% with the futex wake
	// (docs/benchmarks.md run 30).
	MissTask bool
	// MissAdmit (an experiment: fmoe-run's FMOE_CPU_ADMIT=1), with
	// Prefetch, also copies the experts a partly held layer's miss rank
	// computed up to the GPU tier, as prefetches for that layer's next
	// token queued behind the layer's own copies (devshare.go admitShare).
	MissAdmit bool
	// MissAffine (an experiment: fmoe-run's FMOE_CPU_TUNE=affine), with
	// MissAuto, splits a partly held layer's misses by fits of each side's
	// time as a fixed cost a layer plus one an expert (sharefit.go)
	// instead of rounding the share.
	MissAffine bool
	// Prefetch copies the experts predicted for a later layer from the
	// host tier into the GPU tier while the layers before compute
	// (prefetch.go): predicted by the session's route source where it
	// predicts (RoutePredictor: benchmarks), else by that layer's router
	// run on an earlier layer's input. Needs both tiers (PrefetchCheck).
	Prefetch bool
	// PrefetchAhead is how many layers ahead Prefetch predicts (0: 1).
	PrefetchAhead int
	// PrefetchPace (an experiment, benchmarks' FMOE_BENCH_PF_PACE=N), when
	// above 0 and with Prefetch, queues the predicted copies on the host:
	// a layer's tail issues N of them whatever the link is doing, the rest
	// go one at a time as the link goes idle (pace.go), so that a layer's
	// misses wait behind at most N prefetches instead of all those queued
	// for the layers after it.
	PrefetchPace int
}

// Model is an opened packed model. Sessions of one model share its backend
// and must not run concurrently (Model serialises them).
type Model struct {
	Config format.Config
	K      int // routed experts per token in use

	be      backend.Backend
	ownBE   bool
	weights *mmap.File
	t       map[string]backend.Tensor
	layers  []layer
	embed   backend.Tensor
	norm    backend.Tensor
	head    backend.Tensor
	experts *expertReader
	dir     string // for messages
	chunk   int
	maxCtx  int
	// mlaExpand caps the positions of MLA's expanded form; mlaCapped
	// counts the layer steps longer than mlaAbsorbMaxT it sent to the
	// absorbed form instead (tests assert the path).
	mlaExpand int
	mlaCapped int64
	// mu serialises forward passes, snapshots and Close; closed (under
	// mu) makes a pass that comes after Close fail instead of reading
	// unmapped weights.
	mu     sync.Mutex
	closed bool
	// hostMapped: the backend wrapped the weights mapping (HostMapper).
	hostMapped bool
	// cache is the backend's expert cache while it has a budget.
	cache       backend.ExpertCache
	cacheBudget int64
	hostBudget  int64
	stats       ExpertStats
	// obs is the Observer set by Observe, or nil (observe.go).
	obs atomic.Pointer[Observer]
	// ranks are the devices of the MoE block, rank 0 being be (ranks.go);
	// coll joins them and place puts the experts on them (nil: rank 0).
	ranks []rank
	coll  parallel.Collective
	place *parallel.Placement
	miss  int       // the rank of Options.MissBackend, or 0 for none
	load  [][]int64 // picks per layer and expert since Open (ExpertLoad)
	// evicted is the GPU tier's evictions of the last step (demote.go).
	evicted [][2]int
	// offered marks the experts whose first miss took the GPU path (cpumiss.go).
	offered []verifiedSet
	// missShare is Options.MissShare, 1 for 0.
	missShare float64
	// tune, with Options.MissAuto, picks the share from measured rates.
	tune          *shareTuner
	missPrime     time.Duration // Options.MissPrime
	missTask      bool          // Options.MissTask
	missAdmit     bool          // Options.MissAdmit
	prefetch      bool          // Options.Prefetch
	prefetchAhead int           // Options.PrefetchAhead, at least 1
	prefetchPace  int           // Options.PrefetchPace
}

// layer holds the resident tensors of one decoder layer.
type layer struct {
	full                     bool
	inNorm, postNorm         backend.Tensor
	q, k, v, o, qNorm, kNorm backend.Tensor // full attention
	qkv, z, b, a, out        backend.Tensor // GatedDeltaNet
	conv, aLog, dtBias, gNrm backend.Tensor
	router                   backend.Tensor
	shGate, shUp, shDown     backend.Tensor
	shScale                  backend.Tensor // shared_expert_gate [1, H]; nil: the shared expert is ungated
	qb, kb, vb               backend.Tensor // q/k/v projection biases, or nil
	mlpGate, mlpUp, mlpDown  backend.Tensor // a dense layer's MLP
	// Weights registered as one tensor's rows (fuse.go), for one-token
	// steps; nil where the backend keeps them apart: qkv, z, b and a
	// (inProj); shGate and shUp (shGU); router and shScale (routerSh).
	inProj, shGU, routerSh backend.Tensor
	// predict is the router of the layer Options.PrefetchAhead ahead,
	// run on this layer's router input in a one-token step to predict that
	// layer's picks (prefetch.go); nil without Options.Prefetch.
	predict backend.Tensor

	// Set by the model's family (family.go): the MLP in two parts, fixed
	// (the ops that depend on the normed input alone: a dense MLP, or the
	// MoE block's router logits and shared expert; recorded into the
	// layer's graph on decode, graph.go) and ffn (the rest, nil for a
	// dense MLP), and the router of the MoE block.
	fixed func(s *Session, r *run, L *layer, xn, h backend.Buffer, T int)
	ffn   func(s *Session, r *run, l int, L *layer, xn, h backend.Buffer, T int) error
	route router
	dev   *devRule // the router's device form (devroute.go); nil: none
	// devShared: the shared expert runs as a job of the device-routed
	// batch (devroute.go): 0 not yet asked, 1 registered, −1 not taken.
	devShared int8
	// mix, when set, replaces the GQA attention of a full layer (DeepSeek-V3's latent
	// attention, with its tensors in mla); cacheW then gives the widths of the two per-position
	// cache rows (layerState.k and .v) instead of kvHeads*headDim each.
	mix    func(s *Session, r *run, L *layer, st *layerState, xn, h backend.Buffer, T int)
	mla    *mlaLayer
	cacheW [2]int
}

// Open opens the packed model in dir.
func Open(dir string, opts Options) (*Model, error) {
	man, err := format.Open(dir)
	if err != nil {
		return nil, err
	}
	c := man.Config
	if families[c.Architecture] == nil {
		return nil, fmt.Errorf("model: %s: architecture %q: fmoe runs %s", dir, c.Architecture, format.SupportedFamilies())
	}
	m := &Model{Config: c, K: c.NumExpertsPerTok, be: opts.Backend, dir: dir, chunk: opts.PrefillChunk, maxCtx: opts.MaxContext, prefetch: opts.Prefetch, prefetchAhead: max(opts.PrefetchAhead, 1), prefetchPace: max(opts.PrefetchPace, 0)}
	if opts.ExpertsPerToken != 0 {
		m.K = opts.ExpertsPerToken
	}
	if opts.LZ4 && opts.DirectIO {
		return nil, fmt.Errorf("model: the LZ4 copy cannot be read with direct I/O (its compressed blocks are not block-aligned)")
	}
	if m.K <= 0 || m.K > c.NumExperts {
		return nil, fmt.Errorf("model: %d experts per token of %d", m.K, c.NumExperts)
	}
	if m.chunk <= 0 {
		m.chunk = 512
	}
	if m.maxCtx <= 0 {
		m.maxCtx = c.MaxPositionEmbeddings
	}
	if m.maxCtx <= 0 {
		m.maxCtx = 1 << 20
	}
	if m.mlaExpand = opts.MLAExpandedMax; m.mlaExpand <= 0 {
		m.mlaExpand = MLAExpandedDefault
	}
	if m.be == nil {
		m.be, m.ownBE = cpu.New(cpu.Options{}), true
	}
	ok := false
	defer func() {
		if !ok {
			m.Close()
		}
	}()
	if m.weights, err = mmap.Open(filepath.Join(dir, man.Weights.File)); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if err := checkDense(dir, man); err != nil {
		return nil, err
	}
	if hm, ok := m.be.(backend.HostMapper); ok {
		// Registering from the wrapped mapping binds weights in place;
		// where wrapping fails (Metal: past maxBufferLength) Register
		// copies them, which costs memory but nothing else.
		if err := hm.MapHost(m.weights.Data); err != nil {
			slog.Debug("model: weights copied to the backend", "err", err)
		} else {
			m.hostMapped = true
		}
	}
	if err := m.registerAll(man); err != nil {
		return nil, err
	}
	m.setupPredict()
	set := &man.Experts[0]
	if opts.ExpertBits != 0 {
		if set, err = man.ExpertSet(opts.ExpertBits); err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
	}
	par := opts.ReadParallel
	if par <= 0 {
		par = m.K
	}
	if err := checkHostCache(opts.HostCache); err != nil {
		return nil, err
	}
	// Spare slots as many as the reader has buffers (2·par): a margin for
	// experts dropped while a bind still reads them, not a bound on them.
	m.hostBudget = hostTierBudget(opts.HostCache, set, 2*par)
	eo := expertOptions{par: par, direct: opts.DirectIO, lz4: opts.LZ4, check: checkFirst, hostTier: m.hostBudget,
		async: !opts.VerifyBeforeCompute}
	if opts.VerifyEveryRead {
		eo.check = checkEvery
	}
	eo.host, _ = m.be.(backend.HostAllocator)
	if m.experts, err = openExperts(dir, &c, set, eo); err != nil {
		return nil, err
	}
	if err := m.setupCache(opts.GPUCache); err != nil {
		return nil, err
	}
	if err := m.setupRanks(opts); err != nil {
		return nil, err
	}
	ok = true
	return m, nil
}

// Close releases the mapping, the expert files and an owned backend.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	var errs []error
	if m.cache != nil {
		errs = append(errs, m.cache.SetExpertCache(0, 0))
		m.cache = nil
	}
	errs = append(errs, m.closeRanks())
	if m.experts != nil {
		errs = append(errs, m.experts.Close())
	}
	if m.ownBE && m.be != nil {
		errs = append(errs, m.be.Close())
	}
	if m.weights != nil {
		errs = append(errs, m.weights.Close())
		m.weights = nil
	}
	return errors.Join(errs...)
}

// errClosed is returned by a pass that comes after Close.
var errClosed = errors.New("model: used after Close")

// Backend is the backend the model runs on.
func (m *Model) Backend() backend.Backend { return m.be }

// weight turns a manifest entry into a backend descriptor over the bytes
// of blob (the mmapped weights file, or an expert block).
func weight(t *format.Tensor, blob []byte) (backend.Weight, error) {
	var w backend.Weight
	switch len(t.Shape) {
	case 1:
		w.Rows, w.Cols = 1, t.Shape[0]
	case 2:
		w.Rows, w.Cols = t.Shape[0], t.Shape[1]
	default:
		return w, fmt.Errorf("model: tensor %s has shape %v, want 1 or 2 dims", t.Name, t.Shape)
	}
	span := func(s format.Span) ([]byte, error) {
		if !s.Within(int64(len(blob))) {
			return nil, fmt.Errorf("model: tensor %s range at %d (%d bytes) outside its %d-byte file", t.Name, s.Offset, s.Size, len(blob))
		}
		return blob[s.Offset:s.End():s.End()], nil
	}
	var err error
	switch t.DType {
	case format.DTypeU32:
		if w.Format, err = backend.QuantFormat(t.Bits); err != nil {
			return w, fmt.Errorf("model: tensor %s: %w", t.Name, err)
		}
		if t.Scales == nil || t.Biases == nil {
			return w, fmt.Errorf("model: quantised tensor %s lacks scales or biases", t.Name)
		}
		w.Group = t.GroupSize
		if w.Scales, err = span(*t.Scales); err != nil {
			return w, err
		}
		if w.Biases, err = span(*t.Biases); err != nil {
			return w, err
		}
	case format.DTypeBF16:
		w.Format = backend.BF16
	case format.DTypeF16:
		w.Format = backend.F16
	case format.DTypeF32:
		w.Format = backend.F32
	default:
		return w, fmt.Errorf("model: tensor %s has dtype %q", t.Name, t.DType)
	}
	if w.Data, err = span(t.Data); err != nil {
		return w, err
	}
	if err := w.Check(); err != nil {
		return w, fmt.Errorf("model: tensor %s: %w", t.Name, err)
	}
	return w, nil
}

func (m *Model) registerAll(man *format.Manifest) error {
	reg := newRegistry(m, man)
	get := reg.get
	c := &m.Config
	m.embed = get("model.embed_tokens.weight")
	m.norm = get("model.norm.weight")
	if c.TieWordEmbeddings {
		m.head = m.embed
	} else {
		m.head = get("lm_head.weight")
	}
	src := &layerSource{c: c, get: get, rows: reg.rows, vec: func(name string) ([]float32, error) {
		return hostVector(man, m.weights.Data, name)
	}}
	m.layers = make([]layer, c.NumHiddenLayers)
	for l := range m.layers {
		src.l, src.p = l, format.LayerPrefix(l)
		L := &m.layers[l]
		L.inNorm = get(src.p + "input_layernorm.weight")
		L.postNorm = get(src.p + "post_attention_layernorm.weight")
		if err := families[c.Architecture](src, L); err != nil {
			return err
		}
	}
	return reg.done()
}
