package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/fmoe/fmoe/runtime/backend"
)

// tensor is a Tensor: the descriptor itself (bytes used in place) plus, for
// dense weights that element-wise ops read, a float32 decoding made on
// first use.
type tensor struct {
	w        backend.Weight
	bound    bool // made by Bind
	released bool
	vec      []float32
	lat      *absorbedWeights // kv_b_proj's blocks for LatentAttention (latent.go)
}

func (t *tensor) Rows() int              { return t.w.Rows }
func (t *tensor) Cols() int              { return t.w.Cols }
func (t *tensor) Format() backend.Format { return t.w.Format }

func (be *Backend) Register(w backend.Weight) (backend.Tensor, error) {
	if err := w.Check(); err != nil {
		return nil, err
	}
	return &tensor{w: w}, nil
}

// Bind allocates nothing once warm (recycle): the CPU reads the host
// bytes in place.
func (be *Backend) Bind(w backend.Weight) (backend.Tensor, error) {
	if err := w.Check(); err != nil {
		return nil, err
	}
	t := be.bound.get()
	if t == nil {
		t = &tensor{}
	}
	*t = tensor{w: w, bound: true}
	return t, nil
}

// recycle is a FIFO of released bound tensors: a decode step binds three
// per routed expert per layer, and the descriptor is all a bind is on the
// CPU, so Bind re-uses the oldest released one instead of allocating. It
// does so only once more than quarantine wait behind it, so a use of a
// tensor after its Release is still refused for the next quarantine
// releases (the model uses a bound tensor only between its Bind and its
// Release, within one layer).
type recycle struct {
	mu      sync.Mutex
	ring    [2 * quarantine]*tensor
	head, n int
}

const quarantine = 256

func (r *recycle) put(t *tensor) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == len(r.ring) { // full: the oldest goes to the garbage collector
		r.ring[r.head] = nil
		r.head = (r.head + 1) % len(r.ring)
		r.n--
	}
	r.ring[(r.head+r.n)%len(r.ring)] = t
	r.n++
}

func (r *recycle) get() *tensor {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n <= quarantine {
		return nil
	}
	t := r.ring[r.head]
	r.ring[r.head] = nil
	r.head = (r.head + 1) % len(r.ring)
	r.n--
	return t
}

func (be *Backend) Release(t backend.Tensor) error {
	x, ok := t.(*tensor)
	if !ok {
		return fmt.Errorf("cpu: release of %T, not a CPU tensor", t)
	}
	if !x.bound {
		return fmt.Errorf("cpu: release of a registered (resident) tensor")
	}
	if x.released {
		return fmt.Errorf("cpu: tensor released twice")
	}
	x.released = true
	x.w = backend.Weight{Rows: x.w.Rows, Cols: x.w.Cols, Format: x.w.Format}
	x.vec, x.lat = nil, nil
	be.bound.put(x)
	return nil
}

func (be *Backend) tensor(t backend.Tensor, what string) (*tensor, error) {
	if t == nil {
		return nil, fmt.Errorf("cpu: %s weight is nil", what)
	}
	x, ok := t.(*tensor)
	if !ok {
		return nil, fmt.Errorf("cpu: %s weight %T does not belong to the CPU backend", what, t)
	}
	if x.released {
		return nil, fmt.Errorf("cpu: %s weight used after Release", what)
	}
	return x, nil
}

// floats returns the weight decoded to float32, caching the result for
// registered tensors (small vectors: norms, conv taps, A_log, dt_bias).
func (t *tensor) floats() []float32 {
	if t.vec != nil {
		return t.vec
	}
	v := make([]float32, t.w.Rows*t.w.Cols)
	for r := 0; r < t.w.Rows; r++ {
		dequantRow(&t.w, r, v[r*t.w.Cols:(r+1)*t.w.Cols])
	}
	if !t.bound {
		t.vec = v
	}
	return v
}

// vector returns the values of a dense or quantised weight holding exactly
// n values (shape [1, n] or [n, 1]).
func (be *Backend) vector(t backend.Tensor, n int, what string) ([]float32, error) {
	x, err := be.tensor(t, what)
	if err != nil {
		return nil, err
	}
	if err := chk.Vector(what, x.w.Rows, x.w.Cols, n); err != nil {
		return nil, err
	}
	return x.floats(), nil
}

// dequantRow writes row r of w to out (len Cols) in the plain form
// w = q*scale + bias; it is both the embedding kernel and the definition the
// reference matmul uses.
func dequantRow(w *backend.Weight, r int, out []float32) {
	le := binary.LittleEndian
	switch w.Format {
	case backend.Q2, backend.Q4, backend.Q8:
		bits := uint(w.Format.Bits())
		per := 32 / int(bits)
		mask := uint32(1)<<bits - 1
		rb := w.RowBytes()
		row := w.Data[r*rb : (r+1)*rb]
		ng := w.Groups()
		for g := 0; g < ng; g++ {
			s := backend.BF16ToF32(le.Uint16(w.Scales[2*(r*ng+g):]))
			b := backend.BF16ToF32(le.Uint16(w.Biases[2*(r*ng+g):]))
			for j := g * w.Group; j < (g+1)*w.Group; j++ {
				word := le.Uint32(row[4*(j/per):])
				q := word >> (bits * uint(j%per)) & mask
				out[j] = float32(q)*s + b
			}
		}
	case backend.BF16:
		row := w.Data[r*w.Cols*2:]
		for j := range out {
			out[j] = backend.BF16ToF32(le.Uint16(row[2*j:]))
		}
	case backend.F16:
		row := w.Data[r*w.Cols*2:]
		for j := range out {
			out[j] = backend.F16ToF32(le.Uint16(row[2*j:]))
		}
	case backend.F32:
		row := w.Data[r*w.Cols*4:]
		for j := range out {
			out[j] = math.Float32frombits(le.Uint32(row[4*j:]))
		}
	}
}
