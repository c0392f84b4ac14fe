package gpu

import "math"

// ArgKind says what a kernel parameter is.
type ArgKind uint8

const (
	// Addr is a device pointer: Arg.Addr plus Arg.Off float32 elements.
	Addr ArgKind = iota
	// Int is an int32 in Arg.Bits.
	Int
	// Float is a float32 whose bits are Arg.Bits.
	Float
)

// Arg is one kernel parameter, A being the device's address type.
type Arg[A any] struct {
	Kind ArgKind
	Addr A
	Off  int
	Bits uint32
}

// maxArgs is the most parameters of any kernel (attention has 17).
const maxArgs = 20

// Launch is one kernel launch: Grid[0]×Grid[1] blocks of Threads threads
// with Shared bytes of dynamic shared memory, and the kernel's parameters
// in order. A device skips a launch with an empty grid.
type Launch[A any] struct {
	Kernel  Kernel
	Grid    [2]int
	Threads int
	Shared  int
	args    [maxArgs]Arg[A]
	n       int
}

// Args are the parameters, in the kernel's order.
func (l *Launch[A]) Args() []Arg[A] { return l.args[:l.n] }

func (l *Launch[A]) reset(k Kernel, gx, gy, threads, shared int) *Launch[A] {
	*l = Launch[A]{Kernel: k, Grid: [2]int{gx, gy}, Threads: threads, Shared: shared}
	return l
}

func (l *Launch[A]) put(a Arg[A]) *Launch[A] {
	l.args[l.n] = a
	l.n++
	return l
}

func (l *Launch[A]) ptr(a A) *Launch[A] { return l.put(Arg[A]{Kind: Addr, Addr: a}) }

// ptrAt is a plus off float32 elements.
func (l *Launch[A]) ptrAt(a A, off int) *Launch[A] {
	return l.put(Arg[A]{Kind: Addr, Addr: a, Off: off})
}

func (l *Launch[A]) i32(v int) *Launch[A] { return l.put(Arg[A]{Kind: Int, Bits: uint32(int32(v))}) }

func (l *Launch[A]) f32(v float32) *Launch[A] {
	return l.put(Arg[A]{Kind: Float, Bits: math.Float32bits(v)})
}
