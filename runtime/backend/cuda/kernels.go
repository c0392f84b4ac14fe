//go:build linux && cgo

package cuda

/*
#include <stdlib.h>
#include "fmcuda.h"
*/
import "C"

import (
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend/gpu"
)

// kernels are the entry points of the compiled module, by gpu.Kernel.
type kernels [gpu.NumKernels]C.CUfunction

// funcAttrMaxThreads is CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK.
const funcAttrMaxThreads = 0

func (k *kernels) load(be *Backend) error {
	for i := range k {
		name := gpu.Kernel(i).String()
		cs := C.CString(name)
		err := cuErr(C.fm_module_function(be.ctx, &k[i], be.mod, cs), "cuModuleGetFunction "+name)
		C.free(unsafe.Pointer(cs))
		if err != nil {
			return err
		}
		if !gpu.Kernel(i).Matvec() {
			continue
		}
		// The x staging area is dynamic shared memory; allow all of it.
		if err := cuErr(C.fm_func_set_attr(be.ctx, k[i], funcAttrMaxDynShared, C.int(be.dev.maxSmem)),
			"cuFuncSetAttribute"); err != nil {
			return err
		}
		n, err := maxThreads(be, k[i])
		if err != nil {
			return err
		}
		be.mvThreads[i] = n
	}
	return nil
}

// maxThreads is the largest block f can be launched with: below 1024
// where its registers would not fit (a wide MV_NR·MV_U in 16-warp blocks).
func maxThreads(be *Backend, f C.CUfunction) (int, error) {
	var v C.int
	err := cuErr(C.fm_func_get_attr(be.ctx, &v, funcAttrMaxThreads, f), "cuFuncGetAttribute")
	return int(v), err
}

// kernelThreads is Limits.MaxThreads: the fast matvecs' register-bound
// limits; 1024 for the rest, whose blocks the plans keep small.
func (be *Backend) kernelThreads(k gpu.Kernel) int {
	if n := be.mvThreads[k]; n > 0 {
		return n
	}
	return 1024
}
