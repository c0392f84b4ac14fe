package gpu

import (
	"encoding/binary"
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Weight is a bound tensor as the kernels see it: A addresses of its data,
// scales and biases (a device's null where a format has none).
type Weight[A any] struct {
	Rows, Cols, Group int
	Format            backend.Format
	Data, Scales      A
	Biases            A
	// DataOff is the byte offset of Data in its device buffer, checked
	// against Limits.DataAlign.
	DataOff int
}

// RopeKey identifies a RoPE cos/sin table: rows pos0..pos0+T-1, rot dims.
type RopeKey struct {
	T, Rot, Pos0 int
	Theta        float64
}

// Device is what a backend gives Ops: its own handles resolved to device
// addresses of type A, the memory that ops need and the launch itself.
// Resolving reports the backend's errors (nil, foreign or released
// handles, a closed backend).
type Device[A any] interface {
	// Buffer returns b's address and length in float32 values.
	Buffer(b backend.Buffer, what string) (A, int, error)
	// Weight returns t as the kernels address it.
	Weight(t backend.Tensor, what string) (Weight[A], error)
	// Vector returns t as n float32 values (t must hold exactly n),
	// decoding it with Decode unless it is F32 or decoded already.
	Vector(t backend.Tensor, n int, what string) (A, error)
	// Stage copies host bytes for the ops queued next to the device and
	// returns where each part lies (4-byte aligned at least).
	Stage(parts ...[]byte) ([]A, error)
	// Scratch returns room for n float32 values that the next ops may
	// overwrite (DeltaNet's normalised q and k).
	Scratch(n int) (A, error)
	// RopeTable returns the table for key; build computes it. A device
	// may keep it across calls with the same key.
	RopeTable(key RopeKey, build func() []float32) (A, error)
	// Launch queues l on the device, in order with every earlier op.
	Launch(l *Launch[A]) error
}

// Ops implements the compute ops of backend.Backend for a Device. A
// backend embeds it (unexported, through a type alias) so that the ops are
// its methods. Not safe for concurrent use, like the backends.
type Ops[A any] struct {
	dev  Device[A]
	lim  *Limits
	chk  backend.Check
	null A
	l    Launch[A] // reused: a Launch is large, and devices only read it
}

// NewOps returns the ops of dev, reporting errors as name ("cuda: ...").
// null is bound to pointer parameters a kernel will not read. The limits
// are read at every op, so a backend (or a test) may change them.
func NewOps[A any](name string, dev Device[A], lim *Limits, null A) Ops[A] {
	return Ops[A]{dev: dev, lim: lim, chk: NewCheck(name, lim), null: null}
}

// NewCheck returns the argument checks for a device with these limits,
// the kernels' own bounds included.
func NewCheck(name string, lim *Limits) backend.Check {
	return backend.Check{Name: name, MaxRows: lim.MaxGridY, MaxHeadDim: attMaxDim,
		MaxConvTaps: convMaxK, MaxKeyDim: deltaMaxDk, MaxLatent: latMaxL, MaxLatentRope: latMaxR}
}

func (o *Ops[A]) launch(k Kernel, gx, gy, threads, shared int) *Launch[A] {
	return o.l.reset(k, gx, gy, threads, shared)
}

// elementwise plans a 1-D kernel over n elements.
func (o *Ops[A]) elementwise(k Kernel, n int) *Launch[A] {
	th := o.lim.threads(k, 256)
	return o.launch(k, (n+th-1)/th, 1, th, 0)
}

// buffers resolves bufs[i] (named what[i]) into addrs and lens.
func (o *Ops[A]) buffers(addrs []A, lens []int, what []string, bufs ...backend.Buffer) error {
	for i, b := range bufs {
		var err error
		if addrs[i], lens[i], err = o.dev.Buffer(b, what[i]); err != nil {
			return err
		}
	}
	return nil
}

func int32Bytes(v []int) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return b
}

func floatBytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}
