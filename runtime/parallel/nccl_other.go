//go:build !linux || !cgo

package parallel

import (
	"fmt"

	"github.com/fmoe/fmoe/runtime/backend"
)

// NCCLVersion reports that NCCL is used on Linux (with cgo) only.
func NCCLVersion() (string, error) {
	return "", fmt.Errorf("%w: NCCL is loaded on Linux builds with cgo only", ErrNoNCCL)
}

// NCCL stands in for the NCCL collective where it is not built.
type NCCL struct{ Local }

// NewNCCL reports that NCCL is used on Linux (with cgo) only.
func NewNCCL(bes []backend.Backend) (*NCCL, error) {
	if _, _, err := gpuDevices(bes); err != nil {
		return nil, err
	}
	_, err := NCCLVersion()
	return nil, err
}
