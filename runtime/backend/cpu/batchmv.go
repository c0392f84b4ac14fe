package cpu

import (
	"fmt"

	"github.com/fmoe/fmoe/runtime/backend"
)

var _ backend.MatVecBatcher = (*Backend)(nil)

// MatVecBatch is backend.MatVecBatcher: the jobs' rows, laid end to end,
// split over the threads in one dispatch. A layer's experts computed one
// MatMul at a time wake the workers four times an expert, and each wake
// leaves a thread waiting on the slowest part; one dispatch for all of a
// layer's gate and up rows (and one for the downs) keeps every thread on
// weights (issue 13's row 2: the CPUs computing experts beside the PCIe
// link). Each row runs through MatMul's kernel with MatMul's prepared x,
// over ranges that start at a multiple of 4 rows of its own weight, as
// MatMul's parts do, so each job's bits are MatMul(ys[i], ws[i], xs[i], 1)'s.
func (be *Backend) MatVecBatch(ys []backend.Buffer, ws []backend.Tensor, xs []backend.Buffer) error {
	if len(ys) != len(ws) || len(xs) != len(ws) {
		return fmt.Errorf("cpu: matvec batch of %d outputs, %d weights and %d inputs: want one of each a job", len(ys), len(ws), len(xs))
	}
	j := &be.bmv
	j.jobs = j.jobs[:0]
	var bytes, rows int
	for i := range ws {
		jb, err := be.mvJobOf(ws[i], ys[i], xs[i], fmt.Sprintf("matvec batch job %d", i))
		if err != nil {
			return err
		}
		jb.off = rows
		j.jobs = append(j.jobs, jb)
		rows += (jb.w.Rows + 3) &^ 3 // each job's rows start at a multiple of 4
		bytes += len(jb.w.Data)
	}
	j.prepare(be)
	if rows > 0 {
		j.run(be, rows, bytes)
	}
	j.clear()
	return nil
}

// mvJobOf checks w, y and x of a batch's job (what names it in errors)
// and returns the job computing w·x into y.
func (be *Backend) mvJobOf(w backend.Tensor, y, x backend.Buffer, what string) (mvJob, error) {
	t, err := be.tensor(w, what)
	if err != nil {
		return mvJob{}, err
	}
	yd, err := be.data(y, what+" y")
	if err != nil {
		return mvJob{}, err
	}
	xd, err := be.data(x, what+" x")
	if err != nil {
		return mvJob{}, err
	}
	R, C := t.w.Rows, t.w.Cols
	if err := chk.MatMul(R, C, 1, len(xd), len(yd)); err != nil {
		return mvJob{}, fmt.Errorf("%s: %w", what, err)
	}
	return mvJob{w: &t.w, x: xd[:C], y: yd[:R]}, nil
}

// mvBatch is MatVecBatch's pool task over the jobs' rows laid end to end,
// each job's padded to a multiple of 4.
type mvBatch struct {
	jobs    []mvJob
	preps   []prepared // one per distinct (x, kernel, shape of x's use)
	scratch [][]float32
}

// mvJob is one job of a batch: rows [off, off+w.Rows) of the batch.
type mvJob struct {
	w    *backend.Weight
	k    kernel // nil: the reference path
	p    *prepared
	x, y []float32
	off  int
}

// prepare picks each job's kernel and prepares its x, once for the jobs
// that share an x and a kernel that prepares it alike (a layer's gate and
// up jobs all read the same x).
func (j *mvBatch) prepare(be *Backend) {
	j.scratch = be.scratch
	if be.path == PathReference {
		return
	}
	n := 0
	for i := range j.jobs {
		jb := &j.jobs[i]
		jb.k = be.kernel(jb.w)
		if i > 0 {
			pj := &j.jobs[i-1]
			if pj.k == jb.k && &pj.x[0] == &jb.x[0] && samePrep(pj.w, jb.w) {
				jb.p = pj.p
				continue
			}
		}
		if n == len(j.preps) {
			j.preps = append(j.preps, prepared{})
		}
		jb.p = &j.preps[n]
		n++
		jb.k.prep(jb.w, jb.x, 1, jb.p)
	}
}

// samePrep reports whether a kernel prepares x alike for a and b.
func samePrep(a, b *backend.Weight) bool {
	return a.Format == b.Format && a.Cols == b.Cols && a.Group == b.Group
}

// run splits the batch's rows over the threads, or runs them on the
// calling goroutine when they are too few to pay for waking the workers.
func (j *mvBatch) run(be *Backend, rows, bytes int) {
	n := be.threads
	if bytes < minParallelBytes || n <= 1 || rows < 8 {
		j.do(0, 0, rows)
		return
	}
	be.pool.runShared(j, rows, sharedChunk(rows, min(n, rows/4)))
}

func (j *mvBatch) do(part, lo, hi int) {
	for i := range j.jobs {
		jb := &j.jobs[i]
		r0, r1 := max(lo, jb.off)-jb.off, min(hi, jb.off+jb.w.Rows)-jb.off
		if r0 >= r1 {
			continue
		}
		j.rowsOf(part, jb, r0, r1)
	}
}

// rowsOf computes job jb's rows [r0, r1) as part part.
func (j *mvBatch) rowsOf(part int, jb *mvJob, r0, r1 int) {
	if jb.k == nil {
		refRows(jb.w, r0, r1, jb.x, jb.y, 1, grow(&j.scratch[part], jb.w.Cols))
		return
	}
	for b := r0; b < r1; b += rowBlock {
		jb.k.rows(jb.w, b, min(b+rowBlock, r1), jb.p, 0, jb.y)
	}
}

// clear keeps no reference to the caller's weights or buffers.
func (j *mvBatch) clear() {
	clear(j.jobs)
	j.jobs = j.jobs[:0]
	for i := range j.preps {
		p := &j.preps[i]
		p.x, p.xt, p.sx = nil, nil, nil
	}
}
