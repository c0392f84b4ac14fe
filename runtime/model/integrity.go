package model

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/runtime/backend"
)

// The run path trusts no byte it has not checked against the manifest (issue 11: a damaged pack
// printed garbage and exited 0). Dense tensors are checksummed once at Open; each expert block
// the first time this process reads it (every time with Options.VerifyEveryRead): after that
// the page cache serves the same bytes, and checking every read would add more than the read
// costs from the cache (docs/benchmarks.md, "Checksums on the run path"). Logits are checked
// for NaN and Inf, which remain possible from a pack whose checksums match but whose values
// are wrong.

// damaged is the advice every integrity error ends with.
func damaged(dir string) string {
	return fmt.Sprintf("the packed model is damaged: run fmoe-verify --model %s to locate the damage, then re-pack or restore it", dir)
}

// checkDense checksums every span of every dense tensor of the weights file with one worker
// per CPU, reading with pread rather than through the mapping: on the machines measured, page
// faults cost more than the copy (docs/benchmarks.md), and the pages read land in the page
// cache the mapping then uses. It returns the first mismatch in file order.
func checkDense(dir string, man *format.Manifest) error {
	path := filepath.Join(dir, format.WeightsName)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("model: %w", err)
	}
	defer f.Close()
	type job struct {
		t    *format.Tensor
		part string
		s    format.Span
		got  uint32
		err  error
	}
	var jobs []job
	for i := range man.Tensors {
		t := &man.Tensors[i]
		for _, s := range t.Spans() {
			jobs = append(jobs, job{t: t, part: s.Part, s: s.Span})
		}
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(runtime.NumCPU(), len(jobs)) {
		wg.Go(func() {
			buf := make([]byte, denseChunk)
			for i := range next {
				j := &jobs[i] // format.Open has checked the span lies inside the file
				for off := int64(0); off < j.s.Size && j.err == nil; off += denseChunk {
					b := buf[:min(denseChunk, j.s.Size-off)]
					if _, j.err = f.ReadAt(b, j.s.Offset+off); j.err == nil {
						j.got = format.UpdateCRC32C(j.got, b)
					}
				}
			}
		})
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, j := range jobs {
		if j.err != nil {
			return fmt.Errorf("model: reading tensor %s %s from %s: %w", j.t.Name, j.part, path, j.err)
		}
		if j.got != j.s.CRC32C {
			return fmt.Errorf("model: %s: tensor %s %s: checksum mismatch (manifest %08x, file %08x): %s",
				path, j.t.Name, j.part, j.s.CRC32C, j.got, damaged(dir))
		}
	}
	return nil
}

// denseChunk is checkDense's read size: long reads, little memory per worker.
const denseChunk = 8 << 20

// checkMode says which expert reads are checksummed.
type checkMode int

const (
	checkFirst checkMode = iota // the first read of each block in the process (the default)
	checkEvery                  // every read (Options.VerifyEveryRead)
	checkOff                    // none: only benchmarks, to measure the others against
)

// verifiedSet records which blocks of a layer have passed their check in this process.
type verifiedSet []atomic.Uint64

func newVerified(layers, experts int) []verifiedSet {
	v := make([]verifiedSet, layers)
	for l := range v {
		v[l] = make(verifiedSet, (experts+63)/64)
	}
	return v
}

// checkBlock checks expert e's block, just read for layer l, against the manifest, unless the
// mode says it need not.
func (r *expertReader) checkBlock(e *expert, l int) {
	if r.needsCheck(l, e.id) {
		r.verify(e, l)
	}
}

// verify checks expert e's block of layer l against the manifest: it sets e.err on a mismatch,
// else records the block as verified. It may run on a goroutine of its own (async).
func (r *expertReader) verify(e *expert, l int) {
	want := r.set.Layers[l].CRC32C[e.id]
	var got uint32
	if e.sum != nil {
		got = e.sum()
	} else {
		got = format.CRC32C(e.buf[:r.set.Stride])
	}
	if got != want {
		e.err = layerError(l, fmt.Errorf("model: layer %d expert %d (%s, block at offset %d): checksum mismatch (manifest %08x, read %08x): %s", l, e.id, filepath.Join(r.set.Dir, r.set.Layers[l].File), int64(e.id)*r.set.Stride, want, got, damaged(r.dir)))
		return
	}
	r.verified[l][e.id/64].Or(uint64(1) << (e.id % 64))
}

// A first read is checked beside its compute (docs/benchmarks.md, "Checksums on the run path";
// Options.VerifyBeforeCompute restores the check before the bind): the stream hands a block on
// when its bytes are in, its checksum ends on a goroutine of its own (finish), and the step
// awaits every such check before anything leaves it (Model.settleChecks).

// pendingCheck is one expert block's checksum running beside the compute.
type pendingCheck struct {
	l, id int
	done  chan struct{} // closed when err is set and the buffer is back
	err   error
}

// awaitChecks waits for every pending check and returns the experts that failed, as (layer,
// id), and the first failure in read order. Only the goroutine that runs the streams calls it.
func (r *expertReader) awaitChecks() (bad [][2]int, err error) {
	for _, p := range r.pending {
		<-p.done
		if p.err != nil {
			bad = append(bad, [2]int{p.l, p.id})
			if err == nil {
				err = p.err
			}
		}
	}
	clear(r.pending)
	r.pending = r.pending[:0]
	return bad, err
}

// pendingIn reports whether a check of layer l is pending.
func (r *expertReader) pendingIn(l int) bool {
	for _, p := range r.pending {
		if p.l == l {
			return true
		}
	}
	return false
}

// settleChecks awaits the pending checks and drops every expert that failed from every
// device's GPU tier (the host tier never kept it: finish gave its slot back unfilled), so no
// later step computes on it. It returns the first mismatch.
func (m *Model) settleChecks() error {
	if len(m.experts.pending) == 0 {
		return nil
	}
	bad, err := m.experts.awaitChecks()
	for _, k := range bad {
		for d := range m.ranks {
			if c := m.ranks[d].cache; c != nil {
				if derr := c.DropExpert(k[0], k[1]); derr != nil {
					err = errors.Join(err, fmt.Errorf("model: dropping layer %d expert %d from the GPU tier: %w", k[0], k[1], derr))
				}
			}
		}
	}
	return err
}

// needsCheck reports whether a read of expert (l, id) is to be checksummed.
func (r *expertReader) needsCheck(l, id int) bool {
	switch r.check {
	case checkOff:
		return false
	case checkFirst:
		return r.verified[l][id/64].Load()&(uint64(1)<<(id%64)) == 0
	}
	return true
}

// checkLogits refuses non-finite logits: sampling from them would print an arbitrary token
// (the first id, "!", for NaN) as if nothing were wrong.
func (m *Model) checkLogits(logits []float32) error {
	if backend.AllFinite(logits) {
		return nil
	}
	V := m.Config.VocabSize
	for i, v := range logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return m.notFinite(fmt.Sprintf("%v for token id %d at position %d of the step", v, i%V, i/V))
		}
	}
	return nil
}

// notFinite is the error for logits that are not finite, where says which
// (or that the device found one: checkPicked).
func (m *Model) notFinite(where string) error {
	return fmt.Errorf("model: the logits are not finite (%s): the weights or the computation produced NaN or Inf; if fmoe-verify --model %s finds no damage, the pack's values themselves are bad (re-pack from the source)", where, m.dir)
}
