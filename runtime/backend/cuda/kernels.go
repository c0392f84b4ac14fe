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
	}
	return nil
}
