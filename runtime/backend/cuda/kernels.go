//go:build linux && cgo

package cuda

/*
#include <stdlib.h>
#include "fmcuda.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend"
)

// kernels are the entry points of the compiled module.
type kernels struct {
	// matvec[format][0] takes one token per pass, [1] four.
	matvec [backend.F32 + 1][2]C.CUfunction

	generic, dequant, rmsnorm, rope, attention, conv1d C.CUfunction
	deltaPrep, deltaStep                               C.CUfunction
	swiglu, add, gatedAdd, gather, scatterAdd          C.CUfunction
}

func (k *kernels) load(be *Backend) error {
	get := func(name string) (C.CUfunction, error) {
		cs := C.CString(name)
		defer C.free(unsafe.Pointer(cs))
		var f C.CUfunction
		err := cuErr(C.fm_module_function(be.ctx, &f, be.mod, cs), "cuModuleGetFunction "+name)
		return f, err
	}
	named := map[string]*C.CUfunction{
		"matvec_generic": &k.generic, "dequant": &k.dequant, "rmsnorm": &k.rmsnorm, "rope": &k.rope,
		"attention": &k.attention, "conv1d": &k.conv1d, "delta_prep": &k.deltaPrep, "delta_step": &k.deltaStep,
		"swiglu": &k.swiglu, "add": &k.add, "gated_add": &k.gatedAdd, "gather": &k.gather,
		"scatter_add": &k.scatterAdd,
	}
	for name, dst := range named {
		f, err := get(name)
		if err != nil {
			return err
		}
		*dst = f
	}
	for f := backend.Q2; f <= backend.F32; f++ {
		for i, tt := range []int{1, 4} {
			fn, err := get(fmt.Sprintf("matvec_%v_t%d", f, tt))
			if err != nil {
				return err
			}
			// The x staging area is dynamic shared memory; allow all of it.
			if err := cuErr(C.fm_func_set_attr(be.ctx, fn, funcAttrMaxDynShared, C.int(be.dev.maxSmem)),
				"cuFuncSetAttribute"); err != nil {
				return err
			}
			k.matvec[f][i] = fn
		}
	}
	return nil
}
