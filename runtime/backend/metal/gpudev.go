package metal

import (
	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/gpu"
)

// gpuDev is the Backend as the shared ops see it; a separate type keeps
// these methods out of the Backend's API.
type gpuDev struct{ *Backend }

func (d gpuDev) Buffer(b backend.Buffer, what string) (arg, int, error) {
	x, err := d.data(b, what)
	if err != nil {
		return arg{}, 0, err
	}
	return x.arg(0), x.n, nil
}

func (d gpuDev) Weight(t backend.Tensor, what string) (gpu.Weight[arg], error) {
	x, err := d.tensor(t, what)
	if err != nil {
		return gpu.Weight[arg]{}, err
	}
	return x.weight(), nil
}

func (d gpuDev) Vector(t backend.Tensor, n int, what string) (arg, error) {
	return d.vector(t, n, what)
}

func (d gpuDev) Stage(parts ...[]byte) ([]arg, error) { return d.stage(parts...) }

// Scratch grows one buffer: dispatches of one encoder run in order, so it
// serves every op of a command buffer.
func (d gpuDev) Scratch(n int) (arg, error) {
	if n > d.scratchLen {
		id, err := d.dev.newBuffer(4 * n)
		if err != nil {
			return arg{}, err
		}
		if d.scratch != 0 {
			d.queueFree(d.scratch)
		}
		d.scratch, d.scratchLen = id, n
	}
	return at(d.scratch, 0), nil
}

// RopeTable stages the table at every call: staging is a memcpy into
// unified memory.
func (d gpuDev) RopeTable(_ gpu.RopeKey, build func() []float32) (arg, error) {
	st, err := d.stage(floatBytes(build()))
	if err != nil {
		return arg{}, err
	}
	return st[0], nil
}

// Launch encodes one dispatch; Metal binds scalars with setBytes.
func (d gpuDev) Launch(l *gpu.Launch[arg]) error {
	if l.Grid[0] <= 0 || l.Grid[1] <= 0 {
		return nil
	}
	args := make([]arg, len(l.Args()))
	for i, a := range l.Args() {
		switch a.Kind {
		case gpu.Addr:
			args[i] = a.Addr
			args[i].off += 4 * a.Off
		case gpu.Int:
			args[i] = arg{kind: 'i', bits: a.Bits}
		case gpu.Float:
			args[i] = arg{kind: 'f', bits: a.Bits}
		}
	}
	d.dev.dispatch(l.Kernel.String(), l.Grid[0], l.Grid[1], l.Threads, l.Shared, args)
	d.pending = true
	return nil
}
