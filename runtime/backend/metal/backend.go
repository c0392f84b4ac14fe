package metal

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/gpu"
)

// arenaBytes is the size of the staging buffer for per-op host data
// (token ids, row lists, combine weights, RoPE tables): written by the CPU
// while earlier work may still run, so it is only reused after a wait.
const arenaBytes = 1 << 20

// defaultMVGroups bounds matvec threadgroups: a few per GPU core on the
// largest Apple GPUs (80 cores); Metal does not report the core count.
const defaultMVGroups = 320

var errClosed = errors.New("metal: backend is closed")

// ops are the compute ops, shared with the CUDA backend.
type ops = gpu.Ops[arg]

// Backend is the Metal backend. It is not safe for concurrent use.
type Backend struct {
	ops
	dev   device
	lim   gpu.Limits
	chk   backend.Check
	dummy bufID // bound to pointer arguments a kernel will not read

	arena     bufID
	arenaUsed int

	pending bool // work encoded since the last wait
	regions []region

	scratch    bufID // DeltaNet's normalised q and k
	scratchLen int

	held []bufID // staging buffers, released after the next wait

	freeMu sync.Mutex
	freeQ  []bufID // released by GC cleanups, freed at the next wait
	closed bool
}

var (
	_ backend.Backend   = (*Backend)(nil)
	_ backend.AddNormer = (*Backend)(nil)
)

// newBackend wraps an opened device.
func newBackend(dev device) (*Backend, error) {
	be := &Backend{dev: dev, lim: gpu.Limits{
		MaxShared:    dev.maxThreadgroupMemory(),
		SharedAlign:  16,
		DataAlign:    16,
		MaxThreads:   func(k gpu.Kernel) int { return dev.maxThreads(k.String()) },
		MatvecBlocks: defaultMVGroups,
	}}
	be.chk = gpu.NewCheck("metal", &be.lim)
	var err error
	if be.dummy, err = dev.newBuffer(16); err != nil {
		return nil, err
	}
	if be.arena, err = dev.newBuffer(arenaBytes); err != nil {
		return nil, err
	}
	be.ops = gpu.NewOps[arg]("metal", gpuDev{be}, &be.lim, at(be.dummy, 0))
	return be, nil
}

// Name describes the device.
func (be *Backend) Name() string { return "metal(" + be.dev.describe() + ")" }

// Close waits for outstanding work and releases the device. Buffers and
// tensors must not be used afterwards.
func (be *Backend) Close() error {
	if be.closed {
		return nil
	}
	err := be.Sync()
	for _, r := range be.regions {
		be.dev.release(r.id)
		if r.owned != nil {
			err = errors.Join(err, freeHost(r.owned))
		}
	}
	be.regions = nil
	be.closed = true
	return errors.Join(err, be.dev.close())
}

// Sync commits the encoded work and waits for it: the point after which
// the host may reuse memory that pending work read in place.
func (be *Backend) Sync() error {
	if be.closed {
		return errClosed
	}
	var err error
	if be.pending {
		be.dev.commit()
		err = be.dev.wait()
		be.pending = false
		be.arenaUsed = 0
		for _, id := range be.held {
			be.dev.release(id)
		}
		be.held = be.held[:0]
	}
	be.freeMu.Lock()
	q := be.freeQ
	be.freeQ = nil
	be.freeMu.Unlock()
	for _, id := range q {
		be.dev.release(id)
	}
	return err
}

// queueFree defers a release to the next wait: a command buffer in flight
// may still use the buffer (Metal retains it too, the simulator does not).
func (be *Backend) queueFree(id bufID) {
	be.freeMu.Lock()
	be.freeQ = append(be.freeQ, id)
	be.freeMu.Unlock()
}

// root owns a device buffer; views share it, and the buffer is released
// by Free or once no view is reachable.
type root struct {
	id      bufID
	freed   bool
	cleanup runtime.Cleanup
}

// buf is a Buffer: n float32 values at element offset off of a device buffer.
type buf struct {
	be     *Backend
	r      *root
	off, n int
	view   bool
}

func (b *buf) Len() int { return b.n }

// arg binds b at element offset e.
func (b *buf) arg(e int) arg { return arg{buf: b.r.id, off: 4 * (b.off + e)} }

func at(id bufID, off int) arg { return arg{buf: id, off: off} }

func (be *Backend) data(b backend.Buffer, what string) (*buf, error) {
	if be.closed {
		return nil, errClosed
	}
	if b == nil {
		return nil, fmt.Errorf("metal: %s buffer is nil", what)
	}
	x, ok := b.(*buf)
	if !ok || x.be != be {
		return nil, fmt.Errorf("metal: %s buffer %T does not belong to this Metal backend", what, b)
	}
	if x.r.freed {
		return nil, fmt.Errorf("metal: %s buffer used after Free", what)
	}
	return x, nil
}

// newRoot allocates a zeroed device buffer of n bytes released by GC.
func (be *Backend) newRoot(n int) (*root, error) {
	id, err := be.dev.newBuffer(max(n, 16))
	if err != nil {
		return nil, err
	}
	r := &root{id: id}
	r.cleanup = runtime.AddCleanup(r, be.queueFree, id)
	return r, nil
}

// Free queues the buffer's release for the next wait (encoded work may
// still use it) and makes the buffer and its views unusable.
func (be *Backend) Free(b backend.Buffer) error {
	if be.closed {
		return errClosed
	}
	x, ok := b.(*buf)
	switch {
	case !ok || x == nil || x.be != be:
		return fmt.Errorf("metal: free of %T, not a buffer of this Metal backend", b)
	case x.view:
		return errors.New("metal: free of a view (free the buffer Alloc returned)")
	case x.r.freed:
		return errors.New("metal: buffer freed twice")
	}
	x.r.freed = true
	x.r.cleanup.Stop()
	be.queueFree(x.r.id)
	return nil
}

// Alloc returns a zeroed buffer.
func (be *Backend) Alloc(n int) (backend.Buffer, error) {
	if be.closed {
		return nil, errClosed
	}
	if n < 0 {
		return nil, fmt.Errorf("metal: alloc of %d values", n)
	}
	r, err := be.newRoot(4 * n)
	if err != nil {
		return nil, err
	}
	return &buf{be: be, r: r, n: n}, nil
}

// View returns b[off:off+n].
func (be *Backend) View(b backend.Buffer, off, n int) (backend.Buffer, error) {
	x, err := be.data(b, "view")
	if err != nil {
		return nil, err
	}
	if err := be.chk.View(off, n, x.n); err != nil {
		return nil, err
	}
	return &buf{be: be, r: x.r, off: x.off + off, n: n, view: true}, nil
}

func floatBytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

// Write waits for pending work (which may read dst) and copies src in.
func (be *Backend) Write(dst backend.Buffer, src []float32) error {
	d, err := be.data(dst, "write")
	if err != nil {
		return err
	}
	if err := be.chk.Write(len(src), d.n); err != nil {
		return err
	}
	if err := be.Sync(); err != nil {
		return err
	}
	be.dev.upload(d.r.id, 4*d.off, floatBytes(src))
	return nil
}

// Read waits for all pending work and copies src out.
func (be *Backend) Read(dst []float32, src backend.Buffer) error {
	s, err := be.data(src, "read")
	if err != nil {
		return err
	}
	if err := be.chk.Read(len(dst), s.n); err != nil {
		return err
	}
	if err := be.Sync(); err != nil {
		return err
	}
	be.dev.download(s.r.id, 4*s.off, floatBytes(dst))
	return nil
}

// Copy is a blit, ordered with the ops around it.
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
	if d.n > 0 {
		be.dev.copyBuf(d.r.id, 4*d.off, s.r.id, 4*s.off, 4*d.n)
		be.pending = true
	}
	return nil
}

// Zero is a blit fill, ordered with the ops around it.
func (be *Backend) Zero(b backend.Buffer) error {
	x, err := be.data(b, "zero")
	if err != nil {
		return err
	}
	if x.n > 0 {
		be.dev.zeroBuf(x.r.id, 4*x.off, 4*x.n)
		be.pending = true
	}
	return nil
}

// stage copies one op's host data (all of it in one call, so that a
// flush cannot reuse the arena between its parts) into the arena, 16-byte
// aligned, and returns where each part lies. Data larger than the arena
// gets its own buffer, held until the next wait.
func (be *Backend) stage(parts ...[]byte) ([]arg, error) {
	total := 0
	for _, p := range parts {
		total += (len(p) + 15) &^ 15
	}
	out := make([]arg, len(parts))
	if total > arenaBytes {
		for i, p := range parts {
			id, err := be.dev.newBuffer(max(len(p), 16))
			if err != nil {
				return nil, err
			}
			be.dev.upload(id, 0, p)
			be.held = append(be.held, id)
			out[i] = at(id, 0)
		}
		return out, nil
	}
	if be.arenaUsed+total > arenaBytes {
		if err := be.Sync(); err != nil {
			return nil, err
		}
	}
	for i, p := range parts {
		out[i] = at(be.arena, be.arenaUsed)
		be.dev.upload(be.arena, be.arenaUsed, p)
		be.arenaUsed += (len(p) + 15) &^ 15
	}
	return out, nil
}
