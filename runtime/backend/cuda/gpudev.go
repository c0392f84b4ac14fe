//go:build linux && cgo

package cuda

/*
#include "fmcuda.h"
*/
import "C"

import (
	"math"
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/gpu"
)

// ops are the compute ops, shared with the Metal backend.
type ops = gpu.Ops[C.CUdeviceptr]

// maxGridY bounds token counts and row lists that map to grid.y.
const maxGridY = 65535

// gpuDev is the Backend as the shared ops see it; a separate type keeps
// these methods out of the Backend's API.
type gpuDev struct{ *Backend }

func (d gpuDev) Buffer(b backend.Buffer, what string) (C.CUdeviceptr, int, error) {
	x, err := d.data(b, what)
	if err != nil {
		return 0, 0, err
	}
	return x.ptr, x.n, nil
}

func (d gpuDev) Weight(t backend.Tensor, what string) (gpu.Weight[C.CUdeviceptr], error) {
	x, err := d.tensor(t, what)
	if err != nil {
		return gpu.Weight[C.CUdeviceptr]{}, err
	}
	return x.weight(), nil
}

func (d gpuDev) Vector(t backend.Tensor, n int, what string) (C.CUdeviceptr, error) {
	return d.vector(t, n, what)
}

// Stage uploads the parts back to back to the params scratch: ops run in
// stream order, so the next upload cannot overwrite data a queued kernel
// has yet to read.
func (d gpuDev) Stage(parts ...[]byte) ([]C.CUdeviceptr, error) {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	p, err := d.upload(b)
	if err != nil {
		return nil, err
	}
	at := make([]C.CUdeviceptr, len(parts))
	off := 0
	for i, part := range parts {
		at[i] = p + C.CUdeviceptr(off)
		off += len(part)
	}
	return at, nil
}

func (d gpuDev) Scratch(n int) (C.CUdeviceptr, error) { return d.grow(&d.work, 4*n) }

// RopeTable uploads a table only when the key changes: the q and k calls
// of a layer, and every attention layer of a step, share one.
func (d gpuDev) RopeTable(key gpu.RopeKey, build func() []float32) (C.CUdeviceptr, error) {
	if key == d.ropeKey && d.ropeTab.ptr != 0 {
		return d.ropeTab.ptr, nil
	}
	if d.recording {
		return 0, errRecording
	}
	tab := build()
	p, err := d.grow(&d.ropeTab, 4*len(tab))
	if err != nil {
		return 0, err
	}
	if err := cuErr(C.fm_htod(d.ctx, p, unsafe.Pointer(&tab[0]), C.size_t(4*len(tab)), d.stream), "rope table"); err != nil {
		return 0, err
	}
	d.ropeKey = key
	return p, nil
}

// Launch packs the parameters and launches on the compute stream.
func (d gpuDev) Launch(l *gpu.Launch[C.CUdeviceptr]) error {
	d.args.reset()
	for _, a := range l.Args() {
		switch a.Kind {
		case gpu.Addr:
			d.args.ptr(a.Addr + C.CUdeviceptr(4*a.Off))
		case gpu.Int:
			d.args.i32(int(int32(a.Bits)))
		case gpu.Float:
			d.args.f32(math.Float32frombits(a.Bits))
		}
	}
	return d.launch(d.k[l.Kernel], l.Grid[0], l.Grid[1], l.Threads, l.Shared)
}
