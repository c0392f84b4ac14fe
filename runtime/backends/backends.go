// Package backends opens a compute backend by name, so every command offers the same
// --backend auto|cpu|cuda|metal choice and the same fallback: auto takes a GPU where its library and
// device are present and the CPU otherwise, saying which and why.
package backends

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
	"github.com/fmoe/fmoe/runtime/backend/cuda"
	"github.com/fmoe/fmoe/runtime/backend/metal"
)

// Names are the accepted backend names.
var Names = []string{"auto", "cpu", "cuda", "metal"}

// Options configure Open.
type Options struct {
	Threads int       // CPU threads per op (0: all cores)
	Log     io.Writer // where auto says what it chose; nil is silent
	Device  int       // CUDA device ordinal (0: the first)
}

// Open returns the named backend.
func Open(name string, o Options) (backend.Backend, error) {
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	switch name {
	case "cpu":
		return cpu.New(cpu.Options{Threads: o.Threads}), nil
	case "cuda":
		be, err := cuda.NewWithOptions(cuda.Options{Device: o.Device})
		if err != nil {
			return nil, fmt.Errorf("--backend cuda: %w", err)
		}
		return be, nil
	case "metal":
		be, err := metal.New()
		if err != nil {
			return nil, fmt.Errorf("--backend metal: %w", err)
		}
		return be, nil
	case "", "auto":
		var why []string
		if runtime.GOOS == "darwin" {
			be, err := metal.New()
			if err == nil {
				logf("backend: metal")
				return be, nil
			}
			why = append(why, err.Error())
		} else {
			be, err := cuda.NewWithOptions(cuda.Options{Device: o.Device})
			if err == nil {
				logf("backend: cuda")
				return be, nil
			}
			if NoSuchDevice(err) || cuda.IsConfigError(err) {
				return nil, err // a GPU asked for that is not there, or a bad FMOE_CUDA_MV: no CPU in its place
			}
			why = append(why, err.Error())
		}
		logf("backend: cpu (%s)", strings.Join(why, "; "))
		return cpu.New(cpu.Options{Threads: o.Threads}), nil
	}
	return nil, fmt.Errorf("unknown backend %q (want %s)", name, strings.Join(Names, ", "))
}

// NoSuchDevice reports whether err is a device number the machine lacks
// (the --gpus list is wrong), rather than a backend that failed to start.
func NoSuchDevice(err error) bool {
	var nd *cuda.NoDeviceError
	return errors.As(err, &nd)
}

// BadDeviceList reports whether err is OpenDevices refusing the device
// list itself (a device the machine lacks, several on Metal): a usage
// error, where other errors are a backend failing.
func BadDeviceList(err error) bool {
	var le *listError
	return NoSuchDevice(err) || errors.As(err, &le)
}
