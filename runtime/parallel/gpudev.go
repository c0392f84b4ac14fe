package parallel

import (
	"errors"
	"fmt"

	"github.com/fmoe/fmoe/runtime/backend"
)

// ErrNoNCCL says that NCCL (libnccl.so.2) could not be loaded.
var ErrNoNCCL = errors.New("parallel: NCCL not found (install libnccl2 for several GPUs through NVLink or PCIe)")

// GPUDevice is what NCCL needs of a backend: the device, the stream its ops
// run on and its buffers' device addresses. The CUDA backend has it.
type GPUDevice interface {
	backend.Backend
	Ordinal() int
	Stream() uintptr
	DevicePointer(b backend.Buffer) (uintptr, int, error)
}

// gpuDevices checks that every backend is a GPU device of its own.
func gpuDevices(bes []backend.Backend) ([]GPUDevice, []int, error) {
	if len(bes) == 0 {
		return nil, nil, errors.New("parallel: a collective of no devices")
	}
	devs := make([]GPUDevice, len(bes))
	ords := make([]int, len(bes))
	seen := map[int]int{}
	for r, be := range bes {
		d, ok := be.(GPUDevice)
		if !ok || d.Ordinal() < 0 {
			return nil, nil, fmt.Errorf("parallel: NCCL joins CUDA devices; rank %d is %s", r, be.Name())
		}
		if o, dup := seen[d.Ordinal()]; dup {
			return nil, nil, fmt.Errorf("parallel: ranks %d and %d are both CUDA device %d", o, r, d.Ordinal())
		}
		seen[d.Ordinal()] = r
		devs[r], ords[r] = d, d.Ordinal()
	}
	return devs, ords, nil
}
