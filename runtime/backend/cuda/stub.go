//go:build !linux || !cgo

package cuda

import (
	"errors"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Options configures a CUDA backend.
type Options struct {
	// Device is the CUDA device ordinal.
	Device int
	// CacheDir overrides where compiled kernels are cached.
	CacheDir string
	// MemLimit caps the device memory the backend holds (bytes).
	MemLimit int
	// Matvec tunes the decode matvec (see mvconfig.go).
	Matvec MatvecConfig
}

// ErrUnavailable is returned by New on platforms without the CUDA backend.
var ErrUnavailable = errors.New("cuda: CUDA backend not available on this platform")

// Backend stands in for the CUDA backend on other platforms; New never
// returns one.
type Backend struct{ backend.Backend }

// New reports that the CUDA backend is not available on this platform.
func New() (*Backend, error) { return nil, ErrUnavailable }

// NewWithOptions reports that the CUDA backend is not available on this platform.
func NewWithOptions(Options) (*Backend, error) { return nil, ErrUnavailable }

// HostAlloc reports that the CUDA backend is not available on this platform.
func (*Backend) HostAlloc(int) ([]byte, error) { return nil, ErrUnavailable }

// HostFree reports that the CUDA backend is not available on this platform.
func (*Backend) HostFree([]byte) error { return ErrUnavailable }

// Sync reports that the CUDA backend is not available on this platform.
func (*Backend) Sync() error { return ErrUnavailable }

// Ordinal reports no device on this platform.
func (*Backend) Ordinal() int { return -1 }

// Stream reports no stream on this platform.
func (*Backend) Stream() uintptr { return 0 }

// DevicePointer reports that the CUDA backend is not available on this platform.
func (*Backend) DevicePointer(backend.Buffer) (uintptr, int, error) { return 0, 0, ErrUnavailable }

// DeviceCount reports that the CUDA backend is not available on this platform.
func DeviceCount() (int, error) { return 0, ErrUnavailable }
