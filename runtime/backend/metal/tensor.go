package metal

import (
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/gpu"
)

// region is host memory wrapped as one no-copy device buffer (MapHost,
// HostAlloc); weights whose bytes lie inside are bound in place.
type region struct {
	base  uintptr
	n     int
	id    bufID  // 0 where the device cannot wrap host memory
	owned []byte // HostAlloc memory, unmapped by HostFree or Close
}

// find returns where b lies in a region, if it does and is aligned to
// align bytes (Metal wants a buffer offset aligned to the type the kernel
// reads: uint4 for the fast matvec).
func (be *Backend) find(b []byte, align int) (arg, bool) {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if p%uintptr(align) != 0 {
		return arg{}, false
	}
	for _, r := range be.regions {
		if r.id != 0 && p >= r.base && p+uintptr(len(b)) <= r.base+uintptr(r.n) {
			return at(r.id, int(p-r.base)), true
		}
	}
	return arg{}, false
}

func pageRound(n int) int {
	pg := os.Getpagesize()
	return (n + pg - 1) / pg * pg
}

// MapHost wraps b, a whole read-only file mapping (model_weights.bin from
// mmap, so page-aligned, and mapped up to the end of its last page), as one
// no-copy buffer: weights registered from it afterwards are used in place,
// as flash-moe does. Where the device cannot wrap host memory it does
// nothing and Register copies.
func (be *Backend) MapHost(b []byte) error {
	if be.closed {
		return errClosed
	}
	if len(b) == 0 {
		return nil
	}
	p := uintptr(unsafe.Pointer(&b[0]))
	if p%uintptr(os.Getpagesize()) != 0 {
		return fmt.Errorf("metal: MapHost of memory at %#x, not page-aligned (want a whole mmap)", p)
	}
	n := pageRound(len(b))
	id, ok, err := be.dev.newBufferNoCopy(unsafe.Slice(&b[0], n))
	if err != nil || !ok {
		return err
	}
	be.regions = append(be.regions, region{base: p, n: n, id: id})
	return nil
}

// HostAlloc returns n bytes of page-aligned host memory (not Go-managed)
// that the GPU reads in place: an expert pread into it is bound with no
// copy. Free it with HostFree; Close frees what is left.
func (be *Backend) HostAlloc(n int) ([]byte, error) {
	if be.closed {
		return nil, errClosed
	}
	if n <= 0 {
		return nil, fmt.Errorf("metal: host alloc of %d bytes", n)
	}
	size := pageRound(n)
	mem, err := allocHost(size)
	if err != nil {
		return nil, fmt.Errorf("metal: host alloc of %d bytes: %w", n, err)
	}
	id, _, err := be.dev.newBufferNoCopy(mem)
	if err != nil {
		freeHost(mem)
		return nil, err
	}
	be.regions = append(be.regions, region{base: uintptr(unsafe.Pointer(&mem[0])), n: size, id: id, owned: mem})
	return mem[:n:n], nil
}

// HostFree waits for work that may read b and frees it; b must be a slice
// HostAlloc returned.
func (be *Backend) HostFree(b []byte) error {
	if be.closed {
		return errClosed
	}
	for i, r := range be.regions {
		if r.owned != nil && len(b) > 0 && uintptr(unsafe.Pointer(&b[0])) == r.base {
			if err := be.Sync(); err != nil {
				return err
			}
			be.regions = append(be.regions[:i], be.regions[i+1:]...)
			if r.id != 0 {
				be.dev.release(r.id)
			}
			return freeHost(r.owned)
		}
	}
	return fmt.Errorf("metal: HostFree of memory HostAlloc did not return")
}

// owned lists the device copies a tensor made; a cleanup frees them once a
// registered tensor is unreachable, Release frees a bound one's.
type owned struct{ ids []bufID }

// tensor is a Tensor: where its bytes lie on the device.
type tensor struct {
	rows, cols, group int
	format            backend.Format
	data, sc, bi      arg
	vec               *arg // float32 decoding for element-wise ops
	inPlace           bool // reads host memory in place
	bound, released   bool
	own               *owned
}

// weight is t as the shared ops address it.
func (t *tensor) weight() gpu.Weight[arg] {
	return gpu.Weight[arg]{Rows: t.rows, Cols: t.cols, Group: t.group, Format: t.format,
		Data: t.data, Scales: t.sc, Biases: t.bi, DataOff: t.data.off}
}

func (t *tensor) Rows() int              { return t.rows }
func (t *tensor) Cols() int              { return t.cols }
func (t *tensor) Format() backend.Format { return t.format }

// place puts b on the device: in place if a region holds it, else a copy.
func (be *Backend) place(t *tensor, b []byte, align int) (arg, error) {
	if len(b) == 0 {
		return at(be.dummy, 0), nil
	}
	if a, ok := be.find(b, align); ok {
		t.inPlace = true
		return a, nil
	}
	id, err := be.dev.newBuffer(len(b))
	if err != nil {
		return arg{}, err
	}
	t.own.ids = append(t.own.ids, id)
	be.dev.upload(id, 0, b)
	return at(id, 0), nil
}

func (be *Backend) newTensor(w backend.Weight, bound bool) (*tensor, error) {
	if be.closed {
		return nil, errClosed
	}
	if err := w.Check(); err != nil {
		return nil, err
	}
	t := &tensor{rows: w.Rows, cols: w.Cols, group: w.Group, format: w.Format, bound: bound, own: &owned{}}
	var err error
	if t.data, err = be.place(t, w.Data, 16); err == nil {
		if t.sc, err = be.place(t, w.Scales, 4); err == nil {
			t.bi, err = be.place(t, w.Biases, 4)
		}
	}
	if err != nil {
		be.freeOwned(t.own)
		return nil, err
	}
	if !bound {
		runtime.AddCleanup(t, be.freeOwned, t.own)
	}
	return t, nil
}

func (be *Backend) freeOwned(o *owned) {
	for _, id := range o.ids {
		be.queueFree(id)
	}
	o.ids = nil
}

// Register binds a resident weight, in place when MapHost covers it.
func (be *Backend) Register(w backend.Weight) (backend.Tensor, error) { return be.newTensor(w, false) }

// Bind binds a routed expert: in place when its bytes are in HostAlloc
// memory, else copied now (so the host buffer is free again at once).
func (be *Backend) Bind(w backend.Weight) (backend.Tensor, error) { return be.newTensor(w, true) }

// Release ends a Bind. An in-place expert's host memory may be reused as
// soon as this returns, so pending work that reads it is waited for.
func (be *Backend) Release(t backend.Tensor) error {
	if be.closed {
		return errClosed
	}
	x, ok := t.(*tensor)
	if !ok {
		return fmt.Errorf("metal: release of %T, not a Metal tensor", t)
	}
	if !x.bound {
		return fmt.Errorf("metal: release of a registered (resident) tensor")
	}
	if x.released {
		return fmt.Errorf("metal: tensor released twice")
	}
	if x.inPlace && be.pending {
		if err := be.Sync(); err != nil {
			return err
		}
	}
	x.released = true
	be.freeOwned(x.own)
	return nil
}

func (be *Backend) tensor(t backend.Tensor, what string) (*tensor, error) {
	if be.closed {
		return nil, errClosed
	}
	if t == nil {
		return nil, fmt.Errorf("metal: %s weight is nil", what)
	}
	x, ok := t.(*tensor)
	if !ok {
		return nil, fmt.Errorf("metal: %s weight %T does not belong to the Metal backend", what, t)
	}
	if x.released {
		return nil, fmt.Errorf("metal: %s weight used after Release", what)
	}
	return x, nil
}

// vector returns a weight of exactly n values as float32 on the device:
// in place for aligned f32, else decoded once by the dequant kernel.
func (be *Backend) vector(t backend.Tensor, n int, what string) (arg, error) {
	x, err := be.tensor(t, what)
	if err != nil {
		return arg{}, err
	}
	if err := be.chk.Vector(what, x.rows, x.cols, n); err != nil {
		return arg{}, err
	}
	if x.format == backend.F32 {
		return x.data, nil // place aligned it to 16
	}
	if x.vec != nil {
		return *x.vec, nil
	}
	id, err := be.dev.newBuffer(4 * n)
	if err != nil {
		return arg{}, err
	}
	x.own.ids = append(x.own.ids, id)
	w := x.weight()
	if err := gpu.Decode(&be.ops, at(id, 0), &w); err != nil {
		return arg{}, err
	}
	v := at(id, 0)
	x.vec = &v
	return v, nil
}
