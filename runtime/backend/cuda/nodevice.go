package cuda

import "fmt"

// NoDeviceError is New's error for a device number the machine does not
// have: a mistake in the user's device list, not a missing driver, so
// callers that fall back to the CPU when CUDA is unavailable report it
// instead.
type NoDeviceError struct {
	Device, Present int
}

func (e *NoDeviceError) Error() string {
	if e.Present == 0 {
		return fmt.Sprintf("cuda: no device %d (the driver sees no GPU)", e.Device)
	}
	return fmt.Sprintf("cuda: no device %d (%d present, numbered 0 to %d)", e.Device, e.Present, e.Present-1)
}
