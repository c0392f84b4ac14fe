//go:build linux && cgo

package parallel

/*
#cgo LDFLAGS: -ldl
#include "fmnccl.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/fmoe/fmoe/runtime/backend"
)

var nccl struct {
	once sync.Once
	err  error
}

// loadNCCL opens libnccl.so.2 once; the error says what is missing.
func loadNCCL() error {
	nccl.once.Do(func() {
		var buf [512]C.char
		if C.fm_nccl_load(&buf[0], C.int(len(buf))) != 0 {
			nccl.err = fmt.Errorf("%w (%s)", ErrNoNCCL, C.GoString(&buf[0]))
		}
	})
	return nccl.err
}

func ncclErr(r C.int, what string) error {
	if r == 0 {
		return nil
	}
	return fmt.Errorf("parallel: %s: %s (NCCL error %d)", what, C.GoString(C.fm_nccl_error(r)), int(r))
}

// NCCLVersion loads NCCL and returns its version (e.g. "2.21.5").
func NCCLVersion() (string, error) {
	if err := loadNCCL(); err != nil {
		return "", err
	}
	var v C.int
	if err := ncclErr(C.fm_nccl_version(&v), "ncclGetVersion"); err != nil {
		return "", err
	}
	// NCCL ≥ 2.9 encodes major*10000 + minor*100 + patch.
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100), nil
}

// NCCL is the collective over the CUDA devices of one host, one
// communicator per device from one process (ncclCommInitAll), every call
// queued on the devices' own streams as one NCCL group, so it runs in
// order with the backends' ops and no host synchronisation is needed.
type NCCL struct {
	devs  []GPUDevice
	comms []C.uintptr_t
}

// NewNCCL joins the devices bes (rank r is bes[r]); each must be a GPU
// backend (the CUDA backend) on a device of its own.
func NewNCCL(bes []backend.Backend) (*NCCL, error) {
	devs, ords, err := gpuDevices(bes)
	if err != nil {
		return nil, err
	}
	if err := loadNCCL(); err != nil {
		return nil, err
	}
	c := &NCCL{devs: devs, comms: make([]C.uintptr_t, len(devs))}
	cords := make([]C.int, len(ords))
	for i, o := range ords {
		cords[i] = C.int(o)
	}
	if err := ncclErr(C.fm_nccl_init_all(&c.comms[0], C.int(len(devs)), &cords[0]), "ncclCommInitAll"); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *NCCL) Size() int { return len(c.devs) }

// group issues one call per rank between ncclGroupStart and ncclGroupEnd,
// on one OS thread (NCCL keeps the group's state per thread).
func (c *NCCL) group(op string, bufs []backend.Buffer, call func(r int, ptr uintptr, n int) C.int) error {
	if len(bufs) != len(c.devs) {
		return fmt.Errorf("parallel: %s of %d buffers over %d ranks", op, len(bufs), len(c.devs))
	}
	ptrs := make([]uintptr, len(bufs))
	n := -1
	for r, b := range bufs {
		p, m, err := c.devs[r].DevicePointer(b)
		if err != nil {
			return fmt.Errorf("parallel: %s: rank %d: %w", op, r, err)
		}
		if n >= 0 && m != n {
			return fmt.Errorf("parallel: %s: rank %d's buffer holds %d values, rank 0's %d", op, r, m, n)
		}
		ptrs[r], n = p, m
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := ncclErr(C.fm_nccl_group_start(), "ncclGroupStart"); err != nil {
		return err
	}
	var first error
	for r := range bufs {
		if err := ncclErr(call(r, ptrs[r], n), op); err != nil && first == nil {
			first = err
		}
	}
	// The group is always closed, so a failed call does not leave it open.
	return errors.Join(first, ncclErr(C.fm_nccl_group_end(), "ncclGroupEnd"))
}

func (c *NCCL) Broadcast(bufs []backend.Buffer, root int) error {
	if root < 0 || root >= len(c.devs) {
		return fmt.Errorf("parallel: broadcast from rank %d of %d", root, len(c.devs))
	}
	return c.group("ncclBroadcast", bufs, func(r int, ptr uintptr, n int) C.int {
		// In place on every rank: NCCL reads only the root's buffer.
		return C.fm_nccl_broadcast_f32(C.uintptr_t(ptr), C.uintptr_t(ptr), C.size_t(n), C.int(root), c.comms[r], C.uintptr_t(c.devs[r].Stream()))
	})
}

func (c *NCCL) AllReduce(bufs []backend.Buffer) error {
	return c.group("ncclAllReduce", bufs, func(r int, ptr uintptr, n int) C.int {
		return C.fm_nccl_allreduce_f32(C.uintptr_t(ptr), C.uintptr_t(ptr), C.size_t(n), c.comms[r], C.uintptr_t(c.devs[r].Stream()))
	})
}

func (c *NCCL) Close() error {
	var errs []error
	for _, cm := range c.comms {
		if cm != 0 {
			errs = append(errs, ncclErr(C.fm_nccl_destroy(cm), "ncclCommDestroy"))
		}
	}
	c.comms = nil
	return errors.Join(errs...)
}
