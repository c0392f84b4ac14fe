//go:build linux && cgo

package cuda

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "fmcuda.h"
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"
)

// Device attributes and flags of the driver API (cuda.h), declared here
// because no CUDA header is needed to build.
const (
	attrMultiprocessorCount = 16
	attrComputeMajor        = 75
	attrComputeMinor        = 76
	attrMaxSharedOptin      = 97
	funcAttrMaxDynShared    = 8
	eventDisableTiming      = 2
)

// cuErr turns a driver result into an error naming the call.
func cuErr(r C.CUresult, what string) error {
	if r == 0 {
		return nil
	}
	name := C.GoString(C.fm_error_name(r))
	if s := C.GoString(C.fm_error_string(r)); s != "" {
		return fmt.Errorf("cuda: %s: %s (%s)", what, name, s)
	}
	return fmt.Errorf("cuda: %s: %s (%d)", what, name, int(r))
}

var (
	driverOnce sync.Once
	driverErr  error
)

// loadDriver opens libcuda and initialises it once per process.
func loadDriver() error {
	driverOnce.Do(func() {
		var buf [512]C.char
		if C.fm_load_driver(&buf[0], C.int(len(buf))) != 0 {
			driverErr = fmt.Errorf("cuda: no CUDA driver (libcuda.so.1): %s", C.GoString(&buf[0]))
			return
		}
		if err := cuErr(C.fm_init(), "cuInit"); err != nil {
			driverErr = err
		}
	})
	return driverErr
}

// device is one GPU with its primary context.
type device struct {
	ordinal  int
	dev      C.CUdevice
	ctx      C.CUcontext
	name     string
	major    int
	minor    int
	sms      int
	maxSmem  int // opt-in shared memory per block, bytes
	totalMem int64
	driver   int // driver API version, e.g. 13000
}

func openDevice(ordinal int) (*device, error) {
	if err := loadDriver(); err != nil {
		return nil, err
	}
	var n C.int
	if err := cuErr(C.fm_device_count(&n), "cuDeviceGetCount"); err != nil {
		return nil, err
	}
	if ordinal < 0 || ordinal >= int(n) {
		return nil, &NoDeviceError{Device: ordinal, Present: int(n)}
	}
	d := &device{ordinal: ordinal}
	if err := cuErr(C.fm_device_get(&d.dev, C.int(ordinal)), "cuDeviceGet"); err != nil {
		return nil, err
	}
	var name [256]C.char
	if err := cuErr(C.fm_device_name(&name[0], C.int(len(name)), d.dev), "cuDeviceGetName"); err != nil {
		return nil, err
	}
	d.name = C.GoString(&name[0])
	attr := func(a int) (int, error) {
		var v C.int
		err := cuErr(C.fm_device_attr(&v, C.int(a), d.dev), "cuDeviceGetAttribute")
		return int(v), err
	}
	var err error
	if d.major, err = attr(attrComputeMajor); err != nil {
		return nil, err
	}
	if d.minor, err = attr(attrComputeMinor); err != nil {
		return nil, err
	}
	if d.sms, err = attr(attrMultiprocessorCount); err != nil {
		return nil, err
	}
	if d.maxSmem, err = attr(attrMaxSharedOptin); err != nil {
		return nil, err
	}
	var mem C.size_t
	if err := cuErr(C.fm_device_total_mem(&mem, d.dev), "cuDeviceTotalMem"); err != nil {
		return nil, err
	}
	d.totalMem = int64(mem)
	var v C.int
	if err := cuErr(C.fm_driver_version(&v), "cuDriverGetVersion"); err != nil {
		return nil, err
	}
	d.driver = int(v)
	if err := cuErr(C.fm_ctx_retain(&d.ctx, d.dev), "cuDevicePrimaryCtxRetain"); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *device) close() error { return cuErr(C.fm_ctx_release(d.dev), "cuDevicePrimaryCtxRelease") }

// argPack packs kernel arguments at their natural alignment; fm_launch
// hands the driver a pointer to each.
type argPack struct {
	buf  [512]byte
	offs [32]C.int
	n    int
	size int
}

func (a *argPack) reset() { a.n, a.size = 0, 0 }

func (a *argPack) put(p unsafe.Pointer, size int) {
	a.size = (a.size + size - 1) &^ (size - 1)
	copy(a.buf[a.size:a.size+size], unsafe.Slice((*byte)(p), size))
	a.offs[a.n] = C.int(a.size)
	a.n++
	a.size += size
}

func (a *argPack) ptr(p C.CUdeviceptr) *argPack {
	v := uint64(p)
	a.put(unsafe.Pointer(&v), 8)
	return a
}
func (a *argPack) i32(x int) *argPack     { v := int32(x); a.put(unsafe.Pointer(&v), 4); return a }
func (a *argPack) f32(x float32) *argPack { a.put(unsafe.Pointer(&x), 4); return a }
