//go:build !darwin || !arm64 || !cgo

package metal

import "errors"

// ErrUnavailable is what New returns off macOS on Apple Silicon.
var ErrUnavailable = errors.New("metal: Metal backend needs macOS on Apple Silicon (darwin/arm64, built with cgo)")

// New reports that Metal is not available on this platform.
func New() (*Backend, error) { return nil, ErrUnavailable }
