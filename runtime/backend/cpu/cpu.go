// Package cpu is the CPU implementation of backend.Backend: Go, with
// assembly for the hottest kernel where the CPU has it.
//
// The hot op is the dequantising matvec over routed experts streamed from
// disk, so it has three paths, all testable on any machine:
//
//   - PathAuto: AVX2+FMA assembly on amd64 when the CPU has it (and the
//     purego build tag is absent) for 4-bit group-64 weights, PathGo for
//     every other format (2- and 8-bit, bf16, f16, f32) and machine.
//   - PathGo: unrolled pure-Go kernels using the group-sum identity
//     y = Σ_groups (s·Σ q_j x_j + b·Σ x_j), so the bias costs one multiply
//     per group instead of one per weight.
//   - PathReference: the obvious per-element w = q*s + b loops, kept as the
//     readable definition the fast paths are checked against.
//
// Weights are used in place: the backend never copies a matrix's bytes
// (they point into an mmapped file or a pread buffer). Only small dense
// vectors used by element-wise ops (norm weights, conv taps, A_log) are
// decoded once to float32.
package cpu

import (
	"fmt"
	"runtime"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Path selects the matmul/embedding kernels.
type Path int

const (
	PathAuto Path = iota
	PathGo
	PathReference
)

func (p Path) String() string {
	switch p {
	case PathAuto:
		return "auto"
	case PathGo:
		return "go"
	case PathReference:
		return "reference"
	}
	return fmt.Sprintf("Path(%d)", int(p))
}

// Options configures a CPU backend.
type Options struct {
	// Threads is the number of goroutines (the caller and threads−1
	// persistent workers) an op splits its rows over;
	// 0 means runtime.GOMAXPROCS(0).
	Threads int
	// Path selects the kernels (see the package doc).
	Path Path
}

// chk words argument errors as every backend does, with no kernel limits.
var chk = backend.Check{Name: "cpu"}

// Backend is the CPU backend. It is not safe for concurrent use.
type Backend struct {
	threads int
	path    Path
	isa     int  // instruction set of the kernels in use (isaGo: none)
	noTile  bool // no 4-token kernels (benchmarks compare)

	// Per-op state re-used by every op, so the decode path allocates
	// nothing: the worker pool, the matmul task and its prepared input,
	// and per-part scratch (scratch[part]).
	pool    *pool
	mm      matJob
	prep    prepared
	scratch [][]float32
	tmp     []float32 // serial ops' scratch
	attn    attnJob
	delta   deltaJob
}

var _ backend.Backend = (*Backend)(nil)

// New returns a CPU backend.
func New(opts Options) *Backend {
	t := opts.Threads
	if t <= 0 {
		t = runtime.GOMAXPROCS(0)
	}
	be := &Backend{threads: t, path: opts.Path, scratch: make([][]float32, t)}
	be.attachPool()
	if opts.Path == PathAuto {
		be.isa = bestISA
		if be.isa == isaGo {
			be.path = PathGo
		}
	}
	return be
}

// Name describes the backend and the kernels it selected.
func (be *Backend) Name() string {
	k := be.path.String()
	if be.isa != isaGo {
		k = isaNames[be.isa]
	}
	return fmt.Sprintf("cpu(%s, %d threads)", k, be.threads)
}

// Close stops the worker goroutines; buffers are Go memory, garbage
// collected once unreachable (or freed).
func (be *Backend) Close() error {
	be.pool.close()
	return nil
}

// buf is a Buffer: a float32 slice (a view shares its parent's array and
// root, so that a Free of the parent makes its views unusable too).
type buf struct {
	d    []float32
	r    *root
	view bool
}

// root is the state an allocation and its views share.
type root struct{ freed bool }

func (b *buf) Len() int { return len(b.d) }

func (be *Backend) data(b backend.Buffer, what string) ([]float32, error) {
	if b == nil {
		return nil, fmt.Errorf("cpu: %s buffer is nil", what)
	}
	x, ok := b.(*buf)
	if !ok {
		return nil, fmt.Errorf("cpu: %s buffer %T does not belong to the CPU backend", what, b)
	}
	if x.r.freed {
		return nil, fmt.Errorf("cpu: %s buffer used after Free", what)
	}
	return x.d, nil
}

// Alloc returns a zeroed buffer.
func (be *Backend) Alloc(n int) (backend.Buffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("cpu: alloc of %d values", n)
	}
	return &buf{d: make([]float32, n), r: &root{}}, nil
}

// Free drops the buffer's array (the collector reclaims it once no view
// holds it) and makes the buffer and its views unusable.
func (be *Backend) Free(b backend.Buffer) error {
	x, ok := b.(*buf)
	if !ok || x == nil {
		return fmt.Errorf("cpu: free of %T, not a buffer of the CPU backend", b)
	}
	switch {
	case x.view:
		return fmt.Errorf("cpu: free of a view (free the buffer Alloc returned)")
	case x.r.freed:
		return fmt.Errorf("cpu: buffer freed twice")
	}
	x.r.freed, x.d = true, nil
	return nil
}

// View returns b[off:off+n].
func (be *Backend) View(b backend.Buffer, off, n int) (backend.Buffer, error) {
	d, err := be.data(b, "view")
	if err != nil {
		return nil, err
	}
	if err := chk.View(off, n, len(d)); err != nil {
		return nil, err
	}
	return &buf{d: d[off : off+n : off+n], r: b.(*buf).r, view: true}, nil
}

func (be *Backend) Write(dst backend.Buffer, src []float32) error {
	d, err := be.data(dst, "write")
	if err != nil {
		return err
	}
	if err := chk.Write(len(src), len(d)); err != nil {
		return err
	}
	copy(d, src)
	return nil
}

func (be *Backend) Read(dst []float32, src backend.Buffer) error {
	s, err := be.data(src, "read")
	if err != nil {
		return err
	}
	if err := chk.Read(len(dst), len(s)); err != nil {
		return err
	}
	copy(dst, s)
	return nil
}

func (be *Backend) Copy(dst, src backend.Buffer) error {
	d, err := be.data(dst, "copy dst")
	if err != nil {
		return err
	}
	s, err := be.data(src, "copy src")
	if err != nil {
		return err
	}
	if err := chk.Copy(len(d), len(s)); err != nil {
		return err
	}
	copy(d, s)
	return nil
}

func (be *Backend) Zero(b backend.Buffer) error {
	d, err := be.data(b, "zero")
	if err != nil {
		return err
	}
	clear(d)
	return nil
}
