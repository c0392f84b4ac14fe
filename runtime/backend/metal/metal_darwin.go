//go:build darwin && arm64 && cgo

package metal

/*
#cgo CFLAGS: -fobjc-arc
#cgo LDFLAGS: -framework Metal -framework Foundation
#include <stdlib.h>
#include "fmmetal.h"
*/
import "C"

import (
	"errors"
	"unsafe"

	"github.com/fmoe/fmoe/shaders"
)

// New opens the system's default Metal device and compiles the kernels.
func New() (*Backend, error) {
	src := C.CString(shaders.Metal())
	defer C.free(unsafe.Pointer(src))
	var msg [1024]C.char
	d := C.fm_mtl_open(src, &msg[0], C.int(len(msg)))
	if d == nil {
		return nil, errors.New("metal: " + C.GoString(&msg[0]))
	}
	return newBackend(&mtlDevice{d: d, bufs: map[bufID]C.fm_buf{}})
}

var _ device = (*mtlDevice)(nil)

// mtlDevice is the device interface over the bridge. Buffer ids are the
// retained MTLBuffer pointers themselves, kept in bufs as well so that
// contents() needs no cgo pointer juggling and release is checked.
type mtlDevice struct {
	d    C.fm_dev
	bufs map[bufID]C.fm_buf
	args []C.fm_arg
}

func (m *mtlDevice) describe() string {
	var name [256]C.char
	C.fm_mtl_name(m.d, &name[0], C.int(len(name)))
	return C.GoString(&name[0])
}

func (m *mtlDevice) maxThreadgroupMemory() int { return int(C.fm_mtl_max_tg_mem(m.d)) }

func (m *mtlDevice) maxThreads(kernel string) int {
	k := C.CString(kernel)
	defer C.free(unsafe.Pointer(k))
	return int(C.fm_mtl_max_threads(m.d, k))
}

func (m *mtlDevice) add(b C.fm_buf) (bufID, error) {
	if b == nil {
		return 0, errors.New("metal: buffer allocation failed")
	}
	id := bufID(uintptr(unsafe.Pointer(b)))
	m.bufs[id] = b
	return id, nil
}

func (m *mtlDevice) newBuffer(n int) (bufID, error) { return m.add(C.fm_mtl_buffer(m.d, C.size_t(n))) }

// newBufferNoCopy wraps memory outside the Go heap (mmap), which cgo lets
// C keep a pointer to.
func (m *mtlDevice) newBufferNoCopy(host []byte) (bufID, bool, error) {
	id, err := m.add(C.fm_mtl_buffer_nocopy(m.d, unsafe.Pointer(unsafe.SliceData(host)), C.size_t(len(host))))
	if err != nil {
		return 0, false, errors.New("metal: newBufferWithBytesNoCopy failed (memory not page-aligned, or longer than maxBufferLength)")
	}
	return id, true, nil
}

func (m *mtlDevice) release(b bufID) {
	if p, ok := m.bufs[b]; ok {
		delete(m.bufs, b)
		C.fm_mtl_release(p)
	}
}

func (m *mtlDevice) contents(b bufID, off, n int) []byte {
	p := C.fm_mtl_contents(m.bufs[b])
	return unsafe.Slice((*byte)(unsafe.Add(p, off)), n)
}

func (m *mtlDevice) upload(b bufID, off int, src []byte)   { copy(m.contents(b, off, len(src)), src) }
func (m *mtlDevice) download(b bufID, off int, dst []byte) { copy(dst, m.contents(b, off, len(dst))) }

func (m *mtlDevice) dispatch(kernel string, gx, gy, threads, shared int, args []arg) {
	m.args = m.args[:0]
	for _, a := range args {
		m.args = append(m.args, C.fm_arg{buf: m.bufs[a.buf], off: C.uint64_t(a.off), bits: C.uint32_t(a.bits),
			kind: C.uint32_t(a.kind)})
	}
	k := C.CString(kernel)
	defer C.free(unsafe.Pointer(k))
	var ap *C.fm_arg
	if len(m.args) > 0 {
		ap = &m.args[0]
	}
	C.fm_mtl_dispatch(m.d, k, C.uint(gx), C.uint(gy), C.uint(threads), C.uint(shared), ap, C.int(len(m.args)))
}

func (m *mtlDevice) copyBuf(dst bufID, doff int, src bufID, soff, n int) {
	C.fm_mtl_copy(m.d, m.bufs[dst], C.size_t(doff), m.bufs[src], C.size_t(soff), C.size_t(n))
}

func (m *mtlDevice) zeroBuf(b bufID, off, n int) {
	C.fm_mtl_zero(m.d, m.bufs[b], C.size_t(off), C.size_t(n))
}

func (m *mtlDevice) commit() { C.fm_mtl_commit(m.d) }

func (m *mtlDevice) wait() error {
	var msg [1024]C.char
	if C.fm_mtl_wait(m.d, &msg[0], C.int(len(msg))) != 0 {
		return errors.New("metal: " + C.GoString(&msg[0]))
	}
	return nil
}

func (m *mtlDevice) close() error {
	for id := range m.bufs {
		m.release(id)
	}
	C.fm_mtl_close(m.d)
	return nil
}
