// Package backend defines the compute interface the fmoe runtime runs the
// Qwen3.5-MoE forward on.
//
// It follows gonum's blas.Float32 pattern: one interface, several
// implementations (cpu, cuda and metal, chosen by package backends), and one
// conformance suite (package backendtest) that every implementation runs.
//
// Activations live in backend-owned Buffers so that a GPU backend can keep
// them in device memory; the host sees them only through Write and Read.
// Token batches are row-major [T, n]. Weights are described by Weight, whose
// byte slices are used in place (they point into an mmapped file or into a
// pread buffer); Register is for resident weights, Bind for the per-token
// routed experts, which a GPU backend copies to the device.
//
// The op set is deliberately small and coarse (one DeltaNet op rather than
// its six element-wise pieces, attention with its output gate) so that a GPU
// backend can implement each op as one fused kernel.
package backend

import "errors"

// Buffer is a backend-owned array of float32 values. Handles are opaque:
// a Buffer from one backend must not be passed to another.
type Buffer interface {
	// Len is the number of float32 elements.
	Len() int
}

// Tensor is a weight bound to a backend by Register or Bind.
type Tensor interface {
	Rows() int
	Cols() int
	Format() Format
}

// Heads describes T×H vectors of length Dim laid out in a buffer: vector
// (t, h) starts at element Off + t*RowStride + h*HeadStride. It lets the
// per-head ops address interleaved layouts (q_proj emits [q_h | gate_h] per
// head) without a copy.
type Heads struct {
	T, H, Dim             int
	RowStride, HeadStride int
	Off                   int
}

// Rows is the layout of T contiguous rows of n values (one "head" per row).
func Rows(T, n int) Heads { return Heads{T: T, H: 1, Dim: n, RowStride: n, HeadStride: n} }

// Packed is the layout of [T, H, Dim] stored contiguously.
func Packed(T, H, Dim int) Heads {
	return Heads{T: T, H: H, Dim: Dim, RowStride: H * Dim, HeadStride: Dim}
}

// Span is one past the largest element index the layout touches (0 if empty).
func (l Heads) Span() int {
	if l.T <= 0 || l.H <= 0 || l.Dim <= 0 {
		return 0
	}
	return l.Off + (l.T-1)*l.RowStride + (l.H-1)*l.HeadStride + l.Dim
}

// At is the element index of vector (t, h).
func (l Heads) At(t, h int) int { return l.Off + t*l.RowStride + h*l.HeadStride }

// DeltaShape gives the GatedDeltaNet dimensions for Backend.DeltaNet.
type DeltaShape struct {
	T      int // tokens
	Hk, Dk int // key heads and key head dim (q and k share them)
	Hv, Dv int // value heads and value head dim; Hv is a multiple of Hk
	// Eps is the l2norm epsilon (x*rsqrt(Σx²+Eps)); transformers uses 1e-6.
	Eps float32
}

// QKVLen is the width of one conv output row: [q (Hk*Dk) | k (Hk*Dk) | v (Hv*Dv)].
func (s DeltaShape) QKVLen() int { return 2*s.Hk*s.Dk + s.Hv*s.Dv }

// StateLen is the number of float32 values of the recurrent state S[Hv][Dk][Dv].
func (s DeltaShape) StateLen() int { return s.Hv * s.Dk * s.Dv }

// LatentShape gives the dimensions of Backend.LatentAttention: DeepSeek-V3's Multi-head Latent
// Attention, whose cache holds per position a latent of KVL values and one rotary key of Rope
// values shared by every head.
type LatentShape struct {
	T, H       int     // queries and heads
	Nope, Rope int     // query/key dims per head without and with rotary (q is [T, H, Nope+Rope])
	V          int     // value dims per head (out is [T, H·V])
	KVL        int     // latent width (kv_lora_rank)
	Scale      float32 // softmax scale
}

// QLen, OutLen and WeightRows are the sizes q, out and kv_b_proj must have.
func (s LatentShape) QLen() int       { return s.T * s.H * (s.Nope + s.Rope) }
func (s LatentShape) OutLen() int     { return s.T * s.H * s.V }
func (s LatentShape) WeightRows() int { return s.H * (s.Nope + s.V) }

// Backend is a compute device. Implementations need not be safe for
// concurrent use: the runtime drives one backend from one goroutine and the
// backend parallelises inside each op. Ops may run asynchronously; Read
// waits for all earlier ops. Every op validates its arguments and returns an
// error instead of panicking on bad shapes.
type Backend interface {
	Name() string
	Close() error

	// Alloc returns a zeroed buffer of n float32 values.
	Alloc(n int) (Buffer, error)
	// Free releases a buffer Alloc returned now, rather than when the
	// garbage collector finds it unreachable: the collector does not see
	// device memory, so a GPU could fill up long before it runs. Ops
	// already issued that use the buffer complete first; afterwards the
	// buffer and every view of it are unusable (ops given them return an
	// error). Freeing a view, a buffer twice or another backend's buffer
	// is an error. Close frees every buffer still held.
	Free(b Buffer) error
	// View returns the sub-buffer [off, off+n) of b, sharing storage.
	View(b Buffer, off, n int) (Buffer, error)
	// Write copies len(src) values into dst[0:len(src)].
	Write(dst Buffer, src []float32) error
	// Read copies src[0:len(dst)] to the host.
	Read(dst []float32, src Buffer) error
	// Copy copies src into dst; the lengths must match.
	Copy(dst, src Buffer) error
	// Zero sets every value of b to 0.
	Zero(b Buffer) error

	// Register binds a resident weight for the life of the backend. The
	// weight's byte slices must stay valid and unchanged until Close.
	Register(w Weight) (Tensor, error)
	// Bind binds a per-call weight (a routed expert read from disk into a
	// host buffer). The bytes must stay valid until Release; a GPU backend
	// copies them to the device here, the CPU backend uses them in place.
	Bind(w Weight) (Tensor, error)
	// Release ends a Bind; the host buffer may then be reused.
	Release(t Tensor) error

	// MatMul computes y[T, w.Rows] = x[T, w.Cols] · wᵀ, dequantising w.
	MatMul(y Buffer, w Tensor, x Buffer, T int) error
	// Embed writes row ids[i] of w, dequantised, to y[i, 0:w.Cols].
	Embed(y Buffer, w Tensor, ids []int) error
	// RMSNorm computes y = x*rsqrt(mean(x²)+eps)*w for each vector of
	// layout l (y and x share the layout and may be the same buffer).
	// w is a [1, l.Dim] dense weight, or nil for no weight.
	RMSNorm(y, x Buffer, l Heads, w Tensor, eps float32) error
	// GatedRMSNorm computes y = rmsnorm(x)*w*silu(z) per vector of layout l
	// (x, z and y share the layout).
	GatedRMSNorm(y, x, z Buffer, l Heads, w Tensor, eps float32) error
	// Rope rotates, in place, the first rotaryDim dims of every vector of
	// layout l (rotate-half / NeoX pairing (i, i+rotaryDim/2)); row t is at
	// position pos0+t and pair i turns by angle pos·theta^(−2i/rotaryDim).
	Rope(x Buffer, l Heads, rotaryDim int, theta float64, pos0 int) error
	// Attention computes causal GQA attention for the ql.T queries at
	// positions pos0..pos0+ql.T-1 against the KV cache rows [0, pos0+ql.T)
	// of k and v (each row kvHeads*ql.Dim values, query head h reads KV head
	// h/(ql.H/kvHeads)), scale 1/sqrt(ql.Dim), and writes
	// out[T, ql.H*ql.Dim] = attn ⊙ sigmoid(gate). gate (layout gl) may be nil.
	Attention(out, q, gate Buffer, ql, gl Heads, k, v Buffer, kvHeads, pos0 int) error
	// LatentAttention is Multi-head Latent Attention with kv_b_proj absorbed into the query and
	// the output (the DeepSeek-V2 paper's decode): no per-head key or value is formed, so a step
	// costs O(positions·H·(KVL+Rope)) instead of up-projecting every cached latent. wkv is
	// kv_b_proj, [H·(Nope+V), KVL]: head h's key block Wk_h is rows h·(Nope+V) + [0, Nope), its
	// value block Wv_h the V rows after. For query t (position pos0+t) and head h, with
	// qn = q[t,h,0:Nope] and qr = q[t,h,Nope:Nope+Rope]:
	//   ql = Σ_i qn[i]·Wk_h[i, :]                          (KVL values)
	//   s_j = Scale·(ql·lat[j] + qr·kr[j])  for j in [0, pos0+t]
	//   ol = Σ_j softmax(s)_j·lat[j]
	//   out[t, h·V:(h+1)·V] = Wv_h·ol
	// lat holds rows [0, pos0+T) of KVL values, kr of Rope values. It is exactly the attention
	// of per-head keys [Wk_h·lat[j] | kr[j]] and values Wv_h·lat[j], in another order of sums.
	LatentAttention(out, q Buffer, wkv Tensor, lat, kr Buffer, s LatentShape, pos0 int) error
	// Conv1D is the causal depthwise convolution with SiLU of GatedDeltaNet:
	// x and y are [T, C], w is [C, K] (tap K-1 multiplies the current input)
	// and state [K-1, C] holds the previous K-1 inputs, oldest first; it is
	// updated to the last K-1 inputs.
	Conv1D(y, x Buffer, w Tensor, state Buffer, T int) error
	// DeltaNet runs the gated delta rule over T tokens: from qkv [T, s.QKVLen()]
	// (conv output), a and b [T, Hv], A_log and dt_bias [1, Hv] it computes
	// q,k = l2norm per head (q also ×1/sqrt(Dk)), beta = sigmoid(b),
	// g = -exp(A_log)*softplus(a+dt_bias), then per value head h (key head
	// h/(Hv/Hk)): S = S*exp(g); S += k ⊗ ((v - Sᵀk)*beta); y = Sᵀq.
	// state is S[Hv][Dk][Dv], updated in place; y is [T, Hv*Dv].
	DeltaNet(y, qkv, a, b Buffer, aLog, dtBias Tensor, state Buffer, s DeltaShape) error
	// SwiGLU computes y = silu(g)*u element-wise.
	SwiGLU(y, g, u Buffer) error
	// Gather copies rows: dst[i, 0:n] = src[rows[i], 0:n].
	Gather(dst, src Buffer, rows []int, n int) error
	// ScatterAdd accumulates rows: dst[rows[i], 0:n] += weights[i]*src[i, 0:n]
	// (the routed-expert combine).
	ScatterAdd(dst, src Buffer, rows []int, weights []float32, n int) error
	// GatedAdd computes h[t, :] += sigmoid(gate[t])*x[t, :] for T rows of
	// h.Len()/T values (the sigmoid-gated shared expert).
	GatedAdd(h, x, gate Buffer, T int) error
	// Add computes dst += src element-wise (the residual add).
	Add(dst, src Buffer) error
}

// HostAllocator is implemented by backends that bind routed experts faster
// from host memory they allocate themselves: the CUDA backend returns pinned
// memory, which Bind copies to the device by one DMA (about 4x faster than
// from pageable memory); the Metal backend returns page-aligned memory
// wrapped as a no-copy GPU buffer, which Bind uses in place. The runtime
// preads experts straight into it.
//
// HostAlloc returns n bytes that stay valid until HostFree (or the backend's
// Close); the runtime asks no alignment of it but aligns to
// format.ExpertAlign itself, for direct I/O, when it is not. HostFree takes
// exactly a slice HostAlloc returned and waits for pending work that may
// read it. Neither need be safe for concurrent use with other ops.
type HostAllocator interface {
	HostAlloc(n int) ([]byte, error)
	HostFree(b []byte) error
}

// HostMapper is implemented by backends that can use a whole read-only file
// mapping in place (Metal wraps it as one no-copy buffer), so that weights
// Registered from it afterwards are not copied. b is the entire mapping as
// mmap returned it (page-aligned). An error means the mapping could not be
// wrapped (Metal: longer than maxBufferLength); Register then copies, so a
// caller may go on.
type HostMapper interface {
	MapHost(b []byte) error
}

// ExpertCache is implemented by backends that keep routed experts in their
// own memory across steps, keyed by (layer, expert), within a byte budget:
// the CUDA backend keeps them in device memory, so a hit costs neither a
// disk read nor a host-to-device copy. Metal and the CPU leave caching to
// the OS page cache (on unified memory an in-process cache measured as a
// loss). A hit binds the very bytes the miss copied, so it computes exactly
// what the miss did.
type ExpertCache interface {
	// SetExpertCache sets the budget in bytes; 0 turns the cache off. It
	// drops what the cache holds. perToken is the experts one token uses
	// (layers × K): the policy measures age in tokens.
	SetExpertCache(bytes int64, perToken int) error
	// DeviceMemory reports the device memory free now and in all.
	DeviceMemory() (free, total int64, err error)
	// CachedExpert returns the tensors of expert (layer, id), in the order
	// BindExpert was given its weights, when the cache holds it. Release
	// each when done, as after Bind; until then it is not evicted.
	CachedExpert(layer, id int) ([]Tensor, bool)
	// BindExpert binds the weights of expert (layer, id) as Bind does and
	// keeps them when the budget has room after evicting experts not in
	// use; otherwise they are bound uncached. Release each tensor. ws and
	// the bytes it points to are the caller's, valid during the call and
	// until the tensors are released: what the cache keeps, it copies.
	BindExpert(layer, id int, ws []Weight) ([]Tensor, error)
	// DropExpert forgets expert (layer, id) if the cache holds it: its
	// bytes failed a checksum that finished after BindExpert kept them.
	// Tensors already bound over it stay valid until released.
	DropExpert(layer, id int) error
}

// Norm is one of the RMSNorms a NormMatMuler folds into a MatMul: as
// RMSNorm(Y, X, L, W, Eps); with Gate, GatedRMSNorm(Y, X, Z, L, W, Eps);
// with Add, AddRMSNorm(Y, X, Z, L, W, Eps) (Z added into X first).
type Norm struct {
	Y, X, Z   Buffer
	L         Heads
	W         Tensor
	Eps       float32
	Gate, Add bool
}

// Apply computes n on be by the norm's own call: GatedRMSNorm, AddRMSNorm
// (be's AddNormer, else Add then RMSNorm) or RMSNorm. It is what a
// NormMatMuler folds, and its fallback.
func (n Norm) Apply(be Backend) error {
	switch {
	case n.Gate:
		return be.GatedRMSNorm(n.Y, n.X, n.Z, n.L, n.W, n.Eps)
	case n.Add:
		if an, ok := be.(AddNormer); ok {
			return an.AddRMSNorm(n.Y, n.X, n.Z, n.L, n.W, n.Eps)
		}
		if err := be.Add(n.X, n.Z); err != nil {
			return err
		}
	}
	return be.RMSNorm(n.Y, n.X, n.L, n.W, n.Eps)
}

// NormMatMuler is implemented by backends that can fold a norm into the
// one-token MatMul reading its output (CUDA: the integer matvec's staging
// of x done by the norm's launch, one launch fewer on a layer's path).
type NormMatMuler interface {
	// NormMatMul computes n, then MatMul(y, w, n.Y, 1): the same bits in
	// Y, X and y as those calls in turn.
	NormMatMul(n Norm, y Buffer, w Tensor) error
}

// PrefetchSettler is implemented by prefetchers (ExpertPrefetcher) that can
// enter a prefetch whose copy has ended into the cache ahead of its first
// use, device index included (CUDA's), so that kernels reading the index
// find it: a layer routed on the device then computes a prefetch that has
// landed with its other held experts rather than after reading its ids.
type PrefetchSettler interface {
	// SettleLanded settles expert (layer, id) as its first CachedExpert
	// would, without counting a use, where it is a pending prefetch whose
	// copy has ended; it reports whether it did (false: not pending, or
	// the copy still runs).
	SettleLanded(layer, id int) (bool, error)
}

// ExpertToucher is implemented by expert caches that can count a use of a
// held expert without binding it (CUDA's): a layer routed on the device
// computes its held experts from the device index, so the host only asks
// whether each pick was held and tells the policy it was used. It is what
// CachedExpert followed by a Release of every tensor does, without the
// tensors.
type ExpertToucher interface {
	// TouchExpert reports whether the cache holds expert (layer, id),
	// settled (not a prefetch that no CachedExpert has found yet), and if
	// so counts the use as CachedExpert does. false binds and counts
	// nothing: the caller asks CachedExpert (a pending prefetch settles
	// there) or treats the expert as a miss.
	TouchExpert(layer, id int) bool
}

// MatVecBatcher is implemented by backends that run several one-token
// matmuls of one shape in a single launch (CUDA): a decode step's K
// routed experts then cost a few launches instead of 4K. Each job must
// compute exactly what MatMul(ys[i], ws[i], xs[i], 1) computes.
type MatVecBatcher interface {
	MatVecBatch(ys []Buffer, ws []Tensor, xs []Buffer) error
}

// MatMulBatcher is implemented by backends that run many-row matmuls in
// few launches (CUDA: one for each weight shape, format and group among
// the jobs): a prefill layer's routed experts then cost a few launches
// instead of a few each. Job i computes MatMul(ys[i], ws[i], xs[i], Ts[i])
// within MatMul's tolerance, and its bits depend on its own operands
// alone, not on the other jobs or its place among them: a model that
// computes some experts in one batch and others one at a time (cache hits
// and misses) gets the same rows either way. The ys must not overlap one
// another or any x.
type MatMulBatcher interface {
	MatMulBatch(ys []Buffer, ws []Tensor, xs []Buffer, Ts []int) error
}

// TokenCombiner is implemented by backends that add one token's MoE block
// output to h in one launch (CUDA): h += (Σ_i w[i]·eo[i], fused
// multiply-adds from zero in ascending i) + the shared expert, which is
// sigmoid(gate[0])·sd (gate not nil), sd (gate nil) or nothing (sd nil). It
// computes exactly what Zero of an accumulator, ScatterAdd, GatedAdd (or
// Add) and Add compute for that token. len(w) is at most 32.
type TokenCombiner interface {
	CombineToken(h, eo Buffer, w []float32, sd, gate Buffer) error
}

// RowConcatenator is implemented by backends that can register several
// weights of one format, group and width as the rows of one tensor, in
// order: a one-token step then runs the matvecs of weights that share their
// input (a GatedDeltaNet's four input projections, a shared expert's gate
// and up) as one launch, whose output is the parts' outputs one after the
// other. Each row's sum is computed as in its own weight's matvec, so the
// output is the parts' bit for bit. The parts stay usable alone: they are
// views of the same memory, nothing is held twice. It returns an error,
// and registers nothing, where the backend cannot place the parts so
// (mismatched shapes, formats or alignment): the caller registers them one
// by one.
type RowConcatenator interface {
	RegisterRows(ws []Weight) (whole Tensor, parts []Tensor, err error)
}

// GraphRecorder is implemented by backends that can record a run of ops
// once and replay it with one host call (CUDA graphs): a decode step's
// fixed ops of a layer (its norms, mixer, router logits and shared expert)
// then cost one launch instead of one per op. Between BeginGraph and
// EndGraph ops are recorded, not run, and must not read back (Read and
// Sync fail). A replay runs exactly the recorded kernels on the buffers
// and tensors they were recorded with, so it computes what the ops would
// have, bit for bit; the caller keeps those alive and unchanged in place.
type GraphRecorder interface {
	BeginGraph() error
	// EndGraph stops recording and returns the graph. Nothing recorded
	// has run yet: Replay runs it. On an error (an op failed while
	// recording) the recording is dropped.
	EndGraph() (Graph, error)
}

// Graph is a recorded run of ops (GraphRecorder).
type Graph interface {
	// Replay queues the recorded ops. It returns ErrGraphStale when
	// memory the backend manages itself (its scratch) has moved since
	// the recording: the caller records again.
	Replay() error
	// Release frees the graph.
	Release() error
}

// ErrGraphStale is Replay's error for a graph that must be recorded again.
var ErrGraphStale = errors.New("backend: graph recorded before the backend's scratch moved")

// DeviceRouter is implemented by backends that route a token on the device
// (CUDA): the router's logits need not be read back to the host, so a decode
// step whose experts are all in the device's expert cache (IndexedExperts)
// runs a layer with no host round trip.
type DeviceRouter interface {
	// RouteTopK is Route (softmax, the K largest probabilities, ties to the
	// lower index) for each of T tokens of logits [T, E], with the weights
	// renormalised over the K when renorm and the probabilities over all E
	// otherwise (model's softmaxRoute). It writes the ids, as float32 values
	// (exact: E < 2^24), to ids [T, K] in ascending id (the order in which
	// the host path's combine adds the experts, so that both compute the
	// same sums), and their weights to w [T, K]. The ids are exact; each weight is within 2
	// float32 ulps of Route's float64-computed value. A NaN logit can't be an
	// error here without a sync: the token's ids become 0..K-1 (so that what
	// reads them stays in range) and status[0] is set to 1; status (one
	// value, which the caller zeroes) is read when the step ends.
	RouteTopK(ids, w, status, logits Buffer, T, E, K int, renorm bool) error
}

// AsyncReader is implemented by backends that can queue a read of device
// memory behind the work queued so far and let the work queued after it
// run while the host waits (CUDA): a decode step reads a partly held
// layer's expert ids while the device computes the experts it holds
// (runtime/model/devpartial.go), instead of after them.
type AsyncReader interface {
	// ReadAsync queues a copy of src's first len(dst) values (at most
	// MaxAsyncRead) and returns wait, which returns once dst holds them:
	// the values src had when the work queued before the call had run,
	// whatever is queued after it. dst is not to be touched before wait
	// returns, and only one read may be outstanding: a second ReadAsync
	// before the first's wait is an error.
	ReadAsync(dst []float32, src Buffer) (wait func() error, err error)
}

// LinkPacer is implemented by backends whose GPU tier a host can feed at
// the link's pace (CUDA): runtime/model's Options.PrefetchPace issues a
// prefetch, beyond the few a layer's tail queues, only when the copies
// queued before it have ended, and polls the outstanding ReadAsync
// meanwhile, so that a layer's misses, queued when its ids return, wait
// behind few prefetches.
type LinkPacer interface {
	// LinkIdle reports whether every copy queued into the GPU tier (misses'
	// and prefetches') has ended.
	LinkIdle() (bool, error)
	// ReadReady reports whether the outstanding ReadAsync's values have
	// landed (its wait then returns at once); an error without one.
	ReadReady() (bool, error)
}

// MaxAsyncRead is the most values one ReadAsync copies: the ids and weights
// of a layer's routed experts, and a hidden vector beside them (a partly
// held layer's normed input, for the CPUs' share of its misses:
// runtime/model/devshare.go), with room to spare.
const MaxAsyncRead = 8192

// AddNormer is implemented by backends that fuse a residual add into the
// RMSNorm after it (the GPU backends: one launch in place of two, the
// decode step's post-attention norm).
type AddNormer interface {
	// AddRMSNorm adds r into h (h += r) over the vectors of layout l, then
	// computes y = RMSNorm(h) with w as RMSNorm does: bit for bit Add(h, r)
	// then RMSNorm(y, h, l, w, eps) for a layout that covers h.
	AddRMSNorm(y, h, r Buffer, l Heads, w Tensor, eps float32) error
}

// ArgMaxer is implemented by backends that pick a greedy step's token
// where its logits are (the GPU backends: 8 bytes read back instead of the
// vocabulary's logits, and no pass over them on the host).
type ArgMaxer interface {
	// ArgMax writes to dst[0] the first index of x's largest value, as a
	// float32 (exact: x has fewer than 2^24 values), and to dst[1] 1 if x
	// holds a NaN or an infinity, else 0; dst[0] is defined only when
	// dst[1] is 0. dst has at least 2 values, x at least 1.
	ArgMax(dst, x Buffer) error
}

// MaxArgMax is the most values ArgMax takes: every index is then exact in
// a float32.
const MaxArgMax = 1 << 24

// IndexedExperts is implemented by backends whose expert cache
// (ExpertCache) computes a decode step's routed experts from expert ids in
// device memory (CUDA): with DeviceRouter, a layer whose experts are all
// cached costs no host sync, and its ops can be recorded in a graph (the
// cache's index is read when the kernels run, not when they are queued).
type IndexedExperts interface {
	// LayerCached reports whether the cache holds all E experts of layer.
	LayerCached(layer, E int) bool
	// ExpertsIndexed computes, for one token x [H] and each i < K with
	// e = ids[i], eo[i, :] = down_e(silu(gate_e·x) ⊙ (up_e·x)) from the
	// cache's copy of expert (layer, e); g and u are scratch of at least
	// K·I values. Each expert computes exactly what MatMul, SwiGLU and MatMul
	// compute for it. An id the cache does not hold when the kernels run
	// sets status[0] to 2 and leaves that expert's row 0, the others
	// computed: a bug for a layer the caller knows cached, the misses the
	// host then computes for a partly held one (runtime/model/devpartial.go).
	ExpertsIndexed(eo, g, u, x, ids, status Buffer, layer, K int) error
	// CombineTokenIndexed is TokenCombiner.CombineToken with the K weights
	// read from the device buffer w (as RouteTopK writes them): the same
	// sum in the same order, bit for bit.
	CombineTokenIndexed(h, eo, w Buffer, K int, sd, gate Buffer) error
}

// SharedIndexer is implemented by IndexedExperts backends that compute a
// layer's shared expert as one more job of its routed experts' batched
// launches (CUDA): a device-routed layer then runs no launches of its own
// for it (docs/gpu-decode.md).
type SharedIndexer interface {
	// IndexShared registers layer's shared expert: ok is false, and
	// nothing changes, where gate, up and down do not have the shapes and
	// format of the layer's indexed routed experts (or the layer has none
	// indexed yet). It uploads, so it is not called while a graph records.
	IndexShared(layer int, gate, up, down Tensor) (ok bool, err error)
	// ExpertsIndexedShared is ExpertsIndexed with the layer's registered
	// shared expert as row K: eo takes K+1 rows, g and u (K+1)·I values,
	// and row K is exactly what MatMul, SwiGLU and MatMul compute for the
	// shared expert.
	ExpertsIndexedShared(eo, g, u, x, ids, status Buffer, layer, K int) error
}

// EvictionReporter is implemented by expert caches that report what they
// evict to make room (CUDA's), so that the host tier below them can take it
// in: the two tiers then hold disjoint sets of experts, and together more
// of the model than either alone (an expert hit in the host tier moves up,
// an evicted one moves down).
type EvictionReporter interface {
	// Evicted appends to dst the (layer, expert) keys evicted since the
	// last call and forgets them.
	Evicted(dst [][2]int) [][2]int
}

// ExpertPrefetcher is implemented by expert caches that can take an expert
// in ahead of its use (CUDA's): a decode step copies the experts it
// predicts the next layer will miss while this layer computes, so that the
// copy is off the step's path when the prediction is right. A wrong one
// costs link time and a place in the cache, never a wrong result: an entry
// holds the very bytes a miss would have copied.
type ExpertPrefetcher interface {
	// PrefetchExpert admits the weights of expert (layer, id) as
	// BindExpert would (evicting experts not in use), but binds no tensors
	// and leaves the backend's computation free of the copy: the first
	// CachedExpert of the expert orders the work after it. ok is false
	// when the cache did not take it (it holds it already, has no budget,
	// or every entry it could evict is in use). ws's bytes are read until
	// the copy ends: they must stay as they are until PrefetchDone(tok)
	// has reported true.
	PrefetchExpert(layer, id int, ws []Weight) (tok int, ok bool, err error)
	// PrefetchDone reports whether prefetch tok's copy has ended, waiting
	// for it when wait is set. Once it has reported true, tok is spent.
	PrefetchDone(tok int, wait bool) (bool, error)
	// PrefetchPending reports whether expert (layer, id) is a prefetch
	// that no CachedExpert has found yet: a device index (IndexedExperts)
	// leaves such an entry out until then, so kernels that read the index
	// do not see it.
	PrefetchPending(layer, id int) bool
}
