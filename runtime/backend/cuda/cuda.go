//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/gpu"
)

// Options configures a CUDA backend.
type Options struct {
	// Device is the CUDA device ordinal.
	Device int
	// CacheDir overrides where compiled kernels are cached
	// (default os.UserCacheDir()/fmoe/cuda).
	CacheDir string
	// MemLimit, when positive, caps the device memory the backend holds
	// (bytes): an allocation past it fails as if the device were full.
	// For tests of memory pressure on a large card.
	MemLimit int
	// MMAMinRows is the fewest rows (tokens) of a MatMul that run on the
	// tensor cores; 0 means FMOE_CUDA_MMA_MIN or DefaultMMAMinRows, a
	// negative value turns that path off (see mma.go).
	MMAMinRows int
	// MMAGroupedCols is MatMulBatch's split width (columns of K a block of
	// the grouped kernel takes); 0 means FMOE_CUDA_MMA_GCOLS or
	// mmaGroupedCols. Tests lower it so that small weights split.
	MMAGroupedCols int
	// MMASkinnyRows is the most rows of a MatMulBatch job that the grouped
	// kernel's 16-row tile takes (the rest take the 64-row tile: the same
	// bits either way); 0 means FMOE_CUDA_MMA_SKINNY or
	// DefaultMMASkinnyRows, a negative value leaves every job to the
	// 64-row tile.
	MMASkinnyRows int
	// NoPDL launches every kernel the plain way (as FMOE_CUDA_PDL=0 does)
	// instead of with programmatic dependent launch, where a kernel's
	// launch and its blocks' start overlap the tail of the kernel before
	// it and its first statement (GRID_WAIT, prelude_cuda.h) waits for
	// that kernel's end. PDL needs sm_90 and cuLaunchKernelEx; results do
	// not depend on it.
	NoPDL bool
	// PrefetchStream queues prefetches' copies (ExpertPrefetcher) on a
	// copy stream of their own (as FMOE_CUDA_PF_STREAM=1 does), so that a
	// miss's copy, queued on the other, shares the link with a prefetch
	// already running instead of waiting for every prefetch queued before
	// it. Results do not depend on it.
	PrefetchStream bool
	// MMVWarpsPerSM is the one-token integer tensor-core matvec's setting
	// (the resident warps an SM it aims at); 0 means FMOE_CUDA_MMV or
	// DefaultMMVWarpsPerSM (on), a negative value turns it off (see mmv.go).
	MMVWarpsPerSM int
	// MMVRegisterX selects the integer matvec's variant that loads x's
	// fragments into registers when it uses them (as FMOE_CUDA_MMV_SMX=0
	// does) instead of the default's copy to shared memory with cp.async
	// beside the weights' loads (SMX): the same bits, slower (run 15,
	// docs/gpu-decode.md); kept to measure against.
	MMVRegisterX bool
	// MMVPipe selects the integer matvec's variant that copies the
	// weights to shared memory with cp.async as well (PIPE, as
	// FMOE_CUDA_MMV_PIPE=1 does; mmv_cuda.h), holding no registers through
	// their load: the same bits, built in session 18 for a GPU to measure
	// (off until one has). It needs SMX (ignored with MMVRegisterX).
	MMVPipe bool
	// Fold folds launches into the ones before them where the work is
	// the same (as FMOE_CUDA_FOLD=1 does): a norm and the one-token
	// integer matvec's staging of its output (backend.NormMatMuler,
	// normmv.go), and the indexed experts' job tables and their x's
	// staging (indexed.go). The same bits; built in session 18, off until
	// a GPU has measured it.
	Fold bool
	// Matvec tunes the decode matvec (rows per warp, chunks in flight,
	// warps per block, blocks per SM); zero fields take FMOE_CUDA_MV's
	// values, then the defaults (mvconfig.go). Results do not depend on it.
	Matvec MatvecConfig
	// BatchMatvec is Matvec for the batched matvecs (MatVecBatch,
	// ExpertsIndexed); zero fields take FMOE_CUDA_BATCH_MV's values, then
	// the defaults (mvconfig.go). Results do not depend on it.
	BatchMatvec MatvecConfig
}

// Backend is the CUDA backend. Like every backend it is driven from one
// goroutine at a time; only the garbage collector's buffer cleanups reach
// it concurrently, through freeMu.
type Backend struct {
	ops
	pf    prefetches
	lim   gpu.Limits
	chk   backend.Check
	dev   *device
	ctx   C.CUcontext
	mod   C.CUmodule
	bmod  C.CUmodule // the batched matvecs' module where bmv compiles apart; nil: mod
	k     kernels
	batch batchKernels
	mma   mmaState // the tensor-core prefill matmul (mma.go)
	mmv   mmvState // the tensor-core one-token matvec (mmv.go)
	// mmaJobs and mmaGroup are MatMulBatch's job table and jobs, kept for
	// their room.
	mmaJobs  []byte
	mmaGroup []groupJob
	img      *image
	stream   C.CUstream // every op, in order
	copy     C.CUstream // Bind's host-to-device copies
	pcopy    C.CUstream // prefetches' copies (Options.PrefetchStream); nil: copy
	cs       C.CUstream // the copy stream of the copy being queued: copy, or pcopy in PrefetchExpert
	args     argPack
	closed   bool
	pdl      C.int     // 1: kernels launch with programmatic dependent launch (Options.NoPDL)
	trace    *timeline // FMOE_CUDA_TRACE (trace.go)
	stamps   stamps    // Stamp's events (stamp.go)
	// spanOff: an expert's projections are copied one by one even where
	// one copy would do (FMOE_CUDA_EXPERT_SPAN=0, to measure against).
	spanOff bool

	// mv is the decode matvec's setting, resolved (no zero fields);
	// mvThreads each fast matvec's largest block (kernels.load), 0 for the
	// other kernels.
	mv        MatvecConfig
	bmv       MatvecConfig // the batched matvecs' setting (MatVecBatch, ExpertsIndexed)
	mvThreads [gpu.NumKernels]int

	// recording: the compute stream is being captured into a graph
	// (graph.go); epoch counts moves of the scratch buffers, which make
	// graphs recorded before stale.
	recording bool
	epoch     uint64

	live      map[C.CUdeviceptr]int // device allocations, freed at Close
	liveBytes int                   // their total
	memLimit  int                   // Options.MemLimit

	freeMu      sync.Mutex
	freeClosed  bool
	pending     []C.CUdeviceptr // unreachable buffers, freed at the next sync
	pendingSize int

	params  scratch // small host arrays (ids, rows) uploaded per op
	work    scratch // DeltaNet's normalised q and k
	ropeTab scratch
	ropeKey gpu.RopeKey

	cache   *expertCache    // routed experts kept across steps (SetExpertCache)
	idx     devIndex        // the cache's device index (index.go)
	policy  Policy          // the cache's eviction policy
	slots   map[int][]*slot // free device slots for Bind, by size
	stages  []*stage        // pinned staging ring for Bind from pageable memory
	rstages [2]*stage       // pinned staging for large Reads (readStaged)
	aread   asyncRead       // ReadAsync's pinned buffer (readasync.go)
	sread   *stage          // small Reads' pinned buffer (readmapped.go)
	// readMapped: small reads by read_mapped (FMOE_CUDA_READ=mapped), not
	// by DMA.
	readMapped bool
	// upMapped: small uploads through up and write_mapped
	// (FMOE_CUDA_UPLOAD=mapped), not by DMA.
	upMapped bool
	up       upRing
	// lreads: which layer's experts the queued work reads, for evict
	// (FMOE_CUDA_EVICT=layer, an experiment: evictlayer.go).
	lreads  layerReads
	stageAt int
	pinned  []hostRegion // HostAlloc allocations
	// hostHuge: HostAlloc maps huge pages and registers them
	// (FMOE_CUDA_HOST_HUGE=1, an experiment: hostRegion).
	hostHuge bool

	prof *launchProfile // FMOE_CUDA_PROFILE (profile.go); nil when off

	// batchPerJob: batched matvecs launch each job as its own matvec
	// would (FMOE_CUDA_BATCH_PLAN=perjob, for comparison; batchPlan).
	batchPerJob bool
}

var (
	_ backend.Backend   = (*Backend)(nil)
	_ backend.AddNormer = (*Backend)(nil)
)

// New opens CUDA device 0 (see NewWithOptions).
func New() (*Backend, error) { return NewWithOptions(Options{}) }

// NewWithOptions opens a CUDA device: it loads the driver and NVRTC,
// compiles (or loads from the cache) the kernels and creates the streams.
// Where any of that is missing it returns an error saying what.
func NewWithOptions(opts Options) (*Backend, error) {
	mv, err := opts.Matvec.resolve(os.Getenv("FMOE_CUDA_MV"))
	if err != nil {
		return nil, err
	}
	bmv, err := opts.BatchMatvec.resolveFrom("Options.BatchMatvec", "FMOE_CUDA_BATCH_MV", os.Getenv("FMOE_CUDA_BATCH_MV"), defaultBatchMatvec)
	if err != nil {
		return nil, err
	}
	plan := os.Getenv("FMOE_CUDA_BATCH_PLAN")
	if plan != "" && plan != "perjob" {
		return nil, fmt.Errorf("cuda: FMOE_CUDA_BATCH_PLAN=%q: want perjob, or unset", plan)
	}
	d, err := openDevice(opts.Device)
	if err != nil {
		return nil, err
	}
	be := &Backend{dev: d, ctx: d.ctx, live: map[C.CUdeviceptr]int{}, slots: map[int][]*slot{}, memLimit: opts.MemLimit, mv: mv, bmv: bmv,
		prof: profileFromEnv(), trace: timelineFromEnv(), batchPerJob: plan == "perjob",
		spanOff: os.Getenv("FMOE_CUDA_EXPERT_SPAN") == "0"}
	// Blocks loop over matvec row groups (see matvec.h); a few per SM suffice.
	be.lim = gpu.Limits{MaxGridY: maxGridY, MaxShared: d.maxSmem, SMs: d.sms, MatvecBlocks: mv.BlocksPerSM * d.sms,
		MatvecRows: mv.Rows, MatvecWarps: mv.Warps, MaxThreads: be.kernelThreads}
	be.chk = gpu.NewCheck("cuda", &be.lim)
	be.ops = gpu.NewOps[C.CUdeviceptr]("cuda", gpuDev{be}, &be.lim, 0)
	if err := be.init(opts); err != nil {
		be.Close()
		return nil, err
	}
	return be, nil
}

func (be *Backend) init(opts Options) error {
	defs := be.mv.defines()
	smx := !opts.MMVRegisterX && mmvSMX()
	pipe := smx && (opts.MMVPipe || mmvPipe())
	if smx {
		defs = append(slices.Clone(defs), "-DFMOE_MMV_SMX=1") // the SMX matvecs (mmv.go)
	}
	if pipe {
		defs = append(defs, "-DFMOE_MMV_PIPE=1") // and the PIPE ones
	}
	if be.dev.major >= 9 && C.fm_has_launch_ex() != 0 && !opts.NoPDL && os.Getenv("FMOE_CUDA_PDL") != "0" {
		be.pdl = 1
	}
	im, err := moduleImage(be.dev.major, be.dev.minor, opts.CacheDir, defs)
	if err != nil {
		return err
	}
	be.img = im
	if err := cuErr(C.fm_module_load(be.ctx, &be.mod, unsafe.Pointer(&im.data[0])), "cuModuleLoadData"); err != nil {
		return err
	}
	if !slices.Equal(be.bmv.defines(), be.mv.defines()) {
		bim, err := moduleImage(be.dev.major, be.dev.minor, opts.CacheDir, be.bmv.defines())
		if err != nil {
			return err
		}
		if err := cuErr(C.fm_module_load(be.ctx, &be.bmod, unsafe.Pointer(&bim.data[0])), "cuModuleLoadData"); err != nil {
			return err
		}
	}
	if err := be.k.load(be); err != nil {
		return err
	}
	if err := be.batch.load(be); err != nil {
		return err
	}
	if err := be.mma.load(be, opts.MMAMinRows, opts.MMAGroupedCols, opts.MMASkinnyRows); err != nil {
		return err
	}
	if err := be.mmv.load(be, opts.MMVWarpsPerSM, smx, pipe, opts.Fold || foldOn()); err != nil {
		return err
	}
	if err := cuErr(C.fm_stream_create(be.ctx, &be.stream), "cuStreamCreate"); err != nil {
		return err
	}
	if err := cuErr(C.fm_stream_create(be.ctx, &be.copy), "cuStreamCreate"); err != nil {
		return err
	}
	be.cs = be.copy
	be.pf.noSpare = os.Getenv("FMOE_CUDA_PF_SPARE") == "0"
	be.hostHuge = os.Getenv("FMOE_CUDA_HOST_HUGE") == "1"
	be.readMapped = readMappedOn()
	be.upMapped = uploadMappedOn()
	be.lreads = layerReads{on: evictLayerOn(), cur: -1}
	if opts.PrefetchStream || os.Getenv("FMOE_CUDA_PF_STREAM") == "1" {
		return cuErr(C.fm_stream_create(be.ctx, &be.pcopy), "cuStreamCreate")
	}
	return nil
}

// syncCopies waits for every copy queued on the copy streams.
func (be *Backend) syncCopies() error {
	for _, s := range []C.CUstream{be.copy, be.pcopy} {
		if s == nil {
			continue
		}
		if err := cuErr(C.fm_stream_sync(be.ctx, s), "cuStreamSynchronize"); err != nil {
			return err
		}
	}
	return nil
}

// Name describes the device and the kernel image, and the matvec setting
// where it is not the default.
func (be *Backend) Name() string {
	mv := ""
	if be.mv != defaultMatvec {
		mv = "; matvec " + be.mv.String()
	}
	if be.bmv != defaultBatchMatvec {
		mv += "; batched matvec " + be.bmv.String()
	}
	if w := be.mmv.wpsm; w != DefaultMMVWarpsPerSM && w > 0 {
		mv += fmt.Sprintf("; one-token integer tensor-core matvec at %d warps/SM", w)
	} else if w == 0 {
		mv += "; one-token integer tensor-core matvec off"
	}
	if be.pdl == 0 {
		mv += "; plain launches (no PDL)"
	}
	return fmt.Sprintf("cuda(%s, sm_%d%d, %d SMs, %.0f GiB; %s%s)", be.dev.name, be.dev.major, be.dev.minor,
		be.dev.sms, float64(be.dev.totalMem)/(1<<30), be.img.desc, mv)
}

// Close waits for the device, frees everything the backend allocated and
// releases the context. Buffers and tensors are unusable afterwards.
func (be *Backend) Close() error {
	if be.closed {
		return nil
	}
	var errs []error
	if be.stream != nil {
		errs = append(errs, be.Sync(), be.closeTrace())
	}
	be.prof.destroy(be)
	be.destroyStamps()
	be.destroyPrefetches()
	be.freeMu.Lock()
	be.freeClosed = true
	be.pending = nil
	be.freeMu.Unlock()
	for p := range be.live {
		errs = append(errs, cuErr(C.fm_mem_free(be.ctx, p), "cuMemFree"))
	}
	be.live = nil
	for _, s := range be.allSlots() {
		s.destroy(be)
	}
	if c := be.cache; c != nil {
		for _, e := range c.m {
			for _, s := range e.slots {
				s.destroy(be)
			}
		}
		for _, s := range c.spare {
			s.destroy(be)
		}
		be.cache = nil
	}
	for _, st := range be.stages {
		st.destroy(be)
	}
	for _, st := range be.rstages {
		if st != nil {
			st.destroy(be)
		}
	}
	be.rstages = [2]*stage{}
	if st := be.aread.st; st != nil {
		st.destroy(be)
		be.aread = asyncRead{}
	}
	if be.sread != nil {
		be.sread.destroy(be)
		be.sread = nil
	}
	be.closeRing()
	be.destroyLayerReads()
	for _, r := range be.pinned {
		errs = append(errs, r.free(be.ctx))
	}
	be.pinned, be.stages, be.slots = nil, nil, nil
	for _, s := range []C.CUstream{be.stream, be.copy, be.pcopy} {
		if s != nil {
			errs = append(errs, cuErr(C.fm_stream_destroy(be.ctx, s), "cuStreamDestroy"))
		}
	}
	if be.bmod != nil {
		errs = append(errs, cuErr(C.fm_module_unload(be.ctx, be.bmod), "cuModuleUnload"))
		be.bmod = nil
	}
	if be.mod != nil {
		errs = append(errs, cuErr(C.fm_module_unload(be.ctx, be.mod), "cuModuleUnload"))
	}
	errs = append(errs, be.dev.close())
	be.closed = true
	return errors.Join(errs...)
}

// Sync waits for every op and copy issued so far, then frees the device
// memory of buffers the garbage collector found unreachable.
func (be *Backend) Sync() error {
	if be.closed {
		return errClosed
	}
	if be.recording {
		return errRecording
	}
	if err := be.syncCopies(); err != nil {
		return err
	}
	if err := cuErr(C.fm_stream_sync(be.ctx, be.stream), "cuStreamSynchronize"); err != nil {
		return err
	}
	return be.freePending()
}

var errClosed = errors.New("cuda: backend is closed")

// devAlloc allocates n bytes of device memory (256-byte aligned). When
// the device is full it frees what is pending and retries; then, as a last
// resort for buffers nobody Freed, it runs the garbage collector, waits
// for the cleanups it queues and retries once more.
func (be *Backend) devAlloc(n int) (C.CUdeviceptr, error) {
	if be.closed {
		return 0, errClosed
	}
	if n <= 0 {
		n = 4
	}
	be.freeMu.Lock()
	big := be.pendingSize > 256<<20 && !be.recording
	be.freeMu.Unlock()
	if big {
		if err := be.Sync(); err != nil {
			return 0, err
		}
	}
	var p C.CUdeviceptr
	r := be.memAlloc(&p, n)
	if r == cudaErrorOutOfMemory {
		if err := be.Sync(); err != nil {
			return 0, err
		}
		r = be.memAlloc(&p, n)
	}
	if r == cudaErrorOutOfMemory && be.collect() {
		if err := be.Sync(); err != nil {
			return 0, err
		}
		r = be.memAlloc(&p, n)
	}
	if err := cuErr(r, fmt.Sprintf("cuMemAlloc(%d bytes)", n)); err != nil {
		return 0, err
	}
	be.live[p] = n
	be.liveBytes += n
	return p, nil
}

const cudaErrorOutOfMemory = 2

// memAlloc is cuMemAlloc under the optional MemLimit.
func (be *Backend) memAlloc(p *C.CUdeviceptr, n int) C.CUresult {
	if be.memLimit > 0 && be.liveBytes+n > be.memLimit {
		return cudaErrorOutOfMemory
	}
	return C.fm_mem_alloc(be.ctx, p, C.size_t(n))
}

// collect runs the garbage collector and waits (briefly) for the cleanups
// of unreachable buffers to queue their memory. It reports whether any
// was queued.
func (be *Backend) collect() bool {
	runtime.GC()
	for i := 0; i < 20; i++ {
		be.freeMu.Lock()
		n := len(be.pending)
		be.freeMu.Unlock()
		if n > 0 {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// devFree frees now; only for memory no queued work uses.
func (be *Backend) devFree(p C.CUdeviceptr) error {
	if _, ok := be.live[p]; !ok {
		return nil
	}
	be.liveBytes -= be.live[p]
	delete(be.live, p)
	return cuErr(C.fm_mem_free(be.ctx, p), "cuMemFree")
}

// queueFree defers a free to the next sync: queued kernels may still use
// memory whose Go handle has become unreachable. It runs on the garbage
// collector's cleanup goroutine.
func (be *Backend) queueFree(p C.CUdeviceptr, n int) {
	be.freeMu.Lock()
	defer be.freeMu.Unlock()
	if be.freeClosed {
		return
	}
	be.pending = append(be.pending, p)
	be.pendingSize += n
}

// freePending frees what queueFree deferred; the caller has synchronised.
func (be *Backend) freePending() error {
	be.freeMu.Lock()
	p := be.pending
	be.pending, be.pendingSize = nil, 0
	be.freeMu.Unlock()
	var errs []error
	for _, x := range p {
		errs = append(errs, be.devFree(x))
	}
	return errors.Join(errs...)
}

// devMem is one device allocation shared by a buffer and its views; it is
// queued for freeing by Free, or when the last of them is unreachable.
type devMem struct {
	ptr     C.CUdeviceptr // 0 for an empty buffer
	size    int
	freed   bool
	cleanup runtime.Cleanup
}

func (be *Backend) newMem(n int) (*devMem, error) {
	p, err := be.devAlloc(n)
	if err != nil {
		return nil, err
	}
	m := &devMem{ptr: p, size: n}
	m.cleanup = runtime.AddCleanup(m, func(p C.CUdeviceptr) { be.queueFree(p, n) }, p)
	return m, nil
}

// buf is a Buffer: n float32 values at ptr inside mem.
type buf struct {
	be   *Backend
	mem  *devMem
	ptr  C.CUdeviceptr
	n    int
	view bool
}

// Free queues the buffer's memory for freeing at the next sync (queued
// kernels may still use it) and makes the buffer and its views unusable.
func (be *Backend) Free(b backend.Buffer) error {
	if be.closed {
		return errClosed
	}
	x, ok := b.(*buf)
	switch {
	case !ok || x == nil || x.be != be:
		return fmt.Errorf("cuda: free of %T, not a buffer of this CUDA backend", b)
	case x.view:
		return errors.New("cuda: free of a view (free the buffer Alloc returned)")
	case x.mem.freed:
		return errors.New("cuda: buffer freed twice")
	}
	m := x.mem
	m.freed = true
	if m.ptr != 0 {
		m.cleanup.Stop()
		be.queueFree(m.ptr, m.size)
	}
	return nil
}

func (b *buf) Len() int { return b.n }

func (be *Backend) data(b backend.Buffer, what string) (*buf, error) {
	if be.closed {
		return nil, errClosed
	}
	if b == nil {
		return nil, fmt.Errorf("cuda: %s buffer is nil", what)
	}
	x, ok := b.(*buf)
	if !ok || x.be != be {
		return nil, fmt.Errorf("cuda: %s buffer %T does not belong to this CUDA backend", what, b)
	}
	if x.mem.freed {
		return nil, fmt.Errorf("cuda: %s buffer used after Free", what)
	}
	return x, nil
}

// Alloc returns a zeroed buffer.
func (be *Backend) Alloc(n int) (backend.Buffer, error) {
	if be.closed {
		return nil, errClosed
	}
	if n < 0 || n > maxElems {
		return nil, fmt.Errorf("cuda: alloc of %d values", n)
	}
	if n == 0 {
		return &buf{be: be, mem: &devMem{}}, nil
	}
	if be.recording {
		return nil, errRecording // its zeroing would wait for a replay
	}
	m, err := be.newMem(4 * n)
	if err != nil {
		return nil, err
	}
	b := &buf{be: be, mem: m, ptr: m.ptr, n: n}
	return b, cuErr(C.fm_memset32(be.ctx, b.ptr, 0, C.size_t(n), be.stream), "cuMemsetD32Async")
}

// maxElems keeps element indices within the kernels' 32-bit int range.
const maxElems = 1<<31 - 1

// View returns b[off:off+n], sharing storage.
func (be *Backend) View(b backend.Buffer, off, n int) (backend.Buffer, error) {
	x, err := be.data(b, "view")
	if err != nil {
		return nil, err
	}
	if err := be.chk.View(off, n, x.n); err != nil {
		return nil, err
	}
	return &buf{be: be, mem: x.mem, ptr: x.ptr + C.CUdeviceptr(4*off), n: n, view: true}, nil
}

// Write copies src to dst; the driver stages pageable memory before it
// returns, so src may be reused at once.
func (be *Backend) Write(dst backend.Buffer, src []float32) error {
	d, err := be.data(dst, "write")
	if err != nil {
		return err
	}
	if err := be.chk.Write(len(src), d.n); err != nil {
		return err
	}
	if len(src) == 0 {
		return nil
	}
	if be.recording {
		return errRecording
	}
	if err := be.h2dSmall(d.ptr, unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), 4*len(src)), "write"); err != nil {
		return err
	}
	// A host-only mark under FMOE_CUDA_TRACE: a one-token step's small
	// writes (the CPU share's rows sent to the device) sit on the
	// critical path between the share's wait and the combine.
	return be.mark('h', "write", len(src))
}

// Read waits for all earlier ops, then copies to the host.
func (be *Backend) Read(dst []float32, src backend.Buffer) error {
	s, err := be.data(src, "read")
	if err != nil {
		return err
	}
	if err := be.chk.Read(len(dst), s.n); err != nil {
		return err
	}
	if be.recording {
		return errRecording
	}
	if err := be.mark('c', "read", len(dst)); err != nil {
		return err
	}
	defer be.mark('h', "readret", 0)
	if 4*len(dst) >= readStagedMin {
		if err := be.readStaged(dst, s.ptr); err != nil {
			return err
		}
	} else if be.readMapped && len(dst) > 0 && len(dst) <= backend.MaxAsyncRead {
		if err := be.readSmall(dst, s.ptr); err != nil {
			return err
		}
	} else if len(dst) > 0 {
		if err := cuErr(C.fm_dtoh(be.ctx, unsafe.Pointer(&dst[0]), s.ptr, C.size_t(4*len(dst)), be.stream), "read"); err != nil {
			return err
		}
	} else if err := cuErr(C.fm_stream_sync(be.ctx, be.stream), "cuStreamSynchronize"); err != nil {
		return err
	}
	return be.freePending()
}

func (be *Backend) Copy(dst, src backend.Buffer) error {
	d, err := be.data(dst, "copy dst")
	if err != nil {
		return err
	}
	s, err := be.data(src, "copy src")
	if err != nil {
		return err
	}
	if err := be.chk.Copy(d.n, s.n); err != nil {
		return err
	}
	if d.n == 0 {
		return nil
	}
	if be.readMapped && d.n <= backend.MaxAsyncRead {
		return be.copyWords(d.ptr, s.ptr, d.n)
	}
	return cuErr(C.fm_dtod(be.ctx, d.ptr, s.ptr, C.size_t(4*d.n), be.stream), "copy")
}

func (be *Backend) Zero(b backend.Buffer) error {
	d, err := be.data(b, "zero")
	if err != nil {
		return err
	}
	if d.n == 0 {
		return nil
	}
	return cuErr(C.fm_memset32(be.ctx, d.ptr, 0, C.size_t(d.n), be.stream), "zero")
}

// scratch is a device buffer that grows on demand; the old one is freed
// at the next sync, as queued kernels may still read it.
type scratch struct {
	ptr  C.CUdeviceptr
	size int
}

func (be *Backend) grow(s *scratch, n int) (C.CUdeviceptr, error) {
	if n <= s.size {
		return s.ptr, nil
	}
	size := max(n, 2*s.size, 4096)
	p, err := be.devAlloc(size)
	if err != nil {
		return 0, err
	}
	if s.ptr != 0 {
		be.queueFree(s.ptr, s.size)
	}
	s.ptr, s.size = p, size
	if s == &be.work {
		be.epoch++ // ops record it into graphs; params and rope tables are never recorded
	}
	return p, nil
}

// upload copies small host data (ids, row lists) to the params scratch.
// Ops run in stream order, so the next upload cannot overwrite data a
// queued kernel has yet to read.
func (be *Backend) upload(b []byte) (C.CUdeviceptr, error) {
	if be.recording {
		return 0, errRecording
	}
	p, err := be.grow(&be.params, len(b))
	if err != nil || len(b) == 0 {
		return p, err
	}
	return p, be.timed("(upload)", func() error { return be.h2dSmall(p, b, "upload") })
}

// launch runs f on the compute stream with the packed arguments.
func (be *Backend) launch(f C.CUfunction, gx, gy, block, shmem int) error {
	if gx <= 0 || gy <= 0 {
		return nil
	}
	if be.prof != nil {
		return be.timed(be.prof.name(f), func() error { return be.launchNow(f, gx, gy, block, shmem) })
	}
	return be.launchNow(f, gx, gy, block, shmem)
}

func (be *Backend) launchNow(f C.CUfunction, gx, gy, block, shmem int) error {
	a := &be.args
	r := C.fm_launch(be.ctx, f, C.uint(gx), C.uint(gy), C.uint(block), C.uint(shmem), be.stream,
		unsafe.Pointer(&a.buf[0]), &a.offs[0], C.int(a.n), be.pdl)
	if err := cuErr(r, "cuLaunchKernel"); err != nil {
		return err
	}
	return be.markLaunch(f)
}
