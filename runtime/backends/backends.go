// Package backends opens a compute backend by name, so every command offers the same
// --backend auto|cpu|cuda choice and the same fallback: auto takes a GPU where its library and
// device are present and the CPU otherwise, saying which and why.
package backends

import (
	"fmt"
	"io"
	"strings"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
	"github.com/fmoe/fmoe/runtime/backend/cuda"
)

// Names are the accepted backend names.
var Names = []string{"auto", "cpu", "cuda"}

// Options configure Open.
type Options struct {
	Threads int       // CPU threads per op (0: all cores)
	Log     io.Writer // where auto says what it chose; nil is silent
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
		be, err := cuda.New()
		if err != nil {
			return nil, fmt.Errorf("--backend cuda: %w", err)
		}
		return be, nil
	case "", "auto":
		be, err := cuda.New()
		if err == nil {
			logf("backend: cuda")
			return be, nil
		}
		logf("backend: cpu (%v)", err)
		return cpu.New(cpu.Options{Threads: o.Threads}), nil
	}
	return nil, fmt.Errorf("unknown backend %q (want %s)", name, strings.Join(Names, ", "))
}
