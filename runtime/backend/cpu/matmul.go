package cpu

import (
	"github.com/fmoe/fmoe/runtime/backend"
)

// rowBlock is how many weight rows one pass applies to every token of a
// batch before moving on, so that for T > 1 the rows are read from memory
// once and re-used from L2 (64 rows of a 4096-col 4-bit matrix = 128 KiB).
const rowBlock = 64

// minParallelBytes: below this many weight bytes a matmul runs on the
// calling goroutine; waking the workers costs more than it saves.
const minParallelBytes = 64 << 10

// MatMul computes y[T, Rows] = x[T, Cols]·wᵀ.
func (be *Backend) MatMul(y backend.Buffer, w backend.Tensor, x backend.Buffer, T int) error {
	t, err := be.tensor(w, "matmul")
	if err != nil {
		return err
	}
	yd, err := be.data(y, "matmul y")
	if err != nil {
		return err
	}
	xd, err := be.data(x, "matmul x")
	if err != nil {
		return err
	}
	R, C := t.w.Rows, t.w.Cols
	if err := chk.MatMul(R, C, T, len(xd), len(yd)); err != nil {
		return err
	}
	be.matmul(yd, &t.w, xd[:T*C], T)
	return nil
}

func (be *Backend) matmul(y []float32, w *backend.Weight, x []float32, T int) {
	j := &be.mm
	*j = matJob{w: w, x: x, y: y, T: T, scratch: be.scratch}
	if be.path != PathReference {
		j.k = be.kernel(w)
		j.p = &be.prep
		j.k.prep(w, x, T, j.p)
	}
	be.parallel(w, j)
	*j = matJob{} // keep no reference to the caller's weight or buffers
}

// matJob is a matmul as a pool task over rows.
type matJob struct {
	w       *backend.Weight
	k       kernel // nil: the reference path
	p       *prepared
	x, y    []float32
	T       int
	scratch [][]float32
}

func (j *matJob) do(part, lo, hi int) {
	w, T := j.w, j.T
	if j.k == nil {
		refRows(w, lo, hi, j.x, j.y, T, grow(&j.scratch[part], w.Cols))
		return
	}
	for r0 := lo; r0 < hi; r0 += rowBlock {
		r1 := min(r0+rowBlock, hi)
		for t := 0; t < T; t++ {
			j.k.rows(w, r0, r1, j.p, t, j.y[t*w.Rows:(t+1)*w.Rows])
		}
	}
}

// parallel splits the rows of w over the backend's threads.
func (be *Backend) parallel(w *backend.Weight, t task) {
	R := w.Rows
	n := be.threads
	if len(w.Data) < minParallelBytes || n <= 1 || R < 8 {
		t.do(0, 0, R)
		return
	}
	be.pool.runShared(t, R, sharedChunk(R, min(n, R/4)))
}

// grow returns (*s)[:n], reallocating only when the capacity is short, so
// per-part scratch is allocated once per backend, not once per op.
func grow(s *[]float32, n int) []float32 {
	if cap(*s) < n {
		*s = make([]float32, n)
	}
	return (*s)[:n]
}

// refRows is the reference matmul: dequantise each row, then a plain dot.
func refRows(w *backend.Weight, lo, hi int, x, y []float32, T int, row []float32) {
	for r := lo; r < hi; r++ {
		dequantRow(w, r, row)
		for t := 0; t < T; t++ {
			xt := x[t*w.Cols : (t+1)*w.Cols]
			var acc float32
			for j, v := range row {
				acc += v * xt[j]
			}
			y[t*w.Rows+r] = acc
		}
	}
}

// Embed writes the dequantised rows ids[i] of w to y.
func (be *Backend) Embed(y backend.Buffer, w backend.Tensor, ids []int) error {
	t, err := be.tensor(w, "embed")
	if err != nil {
		return err
	}
	yd, err := be.data(y, "embed y")
	if err != nil {
		return err
	}
	C := t.w.Cols
	if err := chk.Embed(ids, t.w.Rows, C, len(yd)); err != nil {
		return err
	}
	for i, id := range ids {
		dequantRow(&t.w, id, yd[i*C:(i+1)*C])
	}
	return nil
}

// kernel is a fast matmul implementation for one weight format.
type kernel interface {
	// prep derives per-token data from x once per call (group sums,
	// re-ordered copies) into p so the row loop only streams weights.
	prep(w *backend.Weight, x []float32, T int, p *prepared)
	// rows writes y[r] for r in [r0, r1) for token t.
	rows(w *backend.Weight, r0, r1 int, p *prepared, t int, y []float32)
}

// prepared is the per-call input of a kernel. The Backend holds one and
// re-uses its buffer: ops run one at a time.
type prepared struct {
	x   []float32 // [T, Cols] as given
	xt  []float32 // [T, Cols] re-ordered for the assembly kernels
	sx  []float32 // [T, Groups]: Σx per scale group
	ng  int
	buf []float32
}

// reset points p at x and returns a scratch slice of n values.
func (p *prepared) reset(x []float32, n int) []float32 {
	p.x, p.xt, p.sx, p.ng = x, nil, nil, 0
	return grow(&p.buf, n)
}

// groupSums fills p.sx with Σx over each group of each token.
func (p *prepared) groupSums(w *backend.Weight, T int) {
	ng, G := w.Groups(), w.Group
	p.ng = ng
	for t := 0; t < T; t++ {
		xr := p.x[t*w.Cols : (t+1)*w.Cols]
		for g := 0; g < ng; g++ {
			var s float32
			for _, v := range xr[g*G : (g+1)*G] {
				s += v
			}
			p.sx[t*ng+g] = s
		}
	}
}
