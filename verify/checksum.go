package verify

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/progress"
)

// collector gathers results from the workers.
type collector struct {
	mu  sync.Mutex
	r   *Report
	bar *progress.Bar
}

func (c *collector) add(p Problem) {
	c.mu.Lock()
	c.r.add(p)
	c.mu.Unlock()
}

func (c *collector) progress(n int64) {
	c.mu.Lock()
	c.r.Read.Bytes += n
	c.mu.Unlock()
	c.bar.Add(n)
}

func (c *collector) tensorDone() {
	c.mu.Lock()
	c.r.Read.Tensors++
	c.mu.Unlock()
}

func (c *collector) blockDone() {
	c.mu.Lock()
	c.r.Read.ExpertBlocks++
	c.mu.Unlock()
}

// job is one unit of reading: a weights segment or a whole expert file.
type job struct {
	seg    *segment
	set    int // index into Manifest.Experts
	layer  int
	blocks int // complete expert blocks on disk
}

// worker owns one read buffer, reused for every job, so memory is workers x buffer whatever
// the model's size.
type worker struct {
	c   *collector
	m   *format.Manifest
	src *sourceCmp
	buf []byte
	aux []byte // the primary set's block, when comparing a requantised set with it
}

// readBuf is the weights read size: long sequential reads without holding much memory.
const readBuf = 8 << 20

// checksumAll reads every byte of model_weights.bin and of every expert file once, spread over
// o.Workers readers, and checks each range against the manifest.
func checksumAll(ctx context.Context, r *Report, o Options, m *format.Manifest, sz *sizes, src *sourceCmp) error {
	var jobs []job
	segs, missing := weightSegments(m, sz.weights)
	for _, s := range missing {
		r.add(Problem{Check: "structure", File: format.WeightsName, Tensor: s.tensor, Part: s.part,
			Message: fmt.Sprintf("tensor %s %s [%d, %d) lies beyond the end of the file (%d bytes)", s.tensor, s.part, s.span.Offset, s.span.End(), sz.weights)})
	}
	total := sz.weights
	if sz.weights > 0 {
		r.Read.Files++
	}
	for i := range segs {
		jobs = append(jobs, job{seg: &segs[i]})
	}
	bufSize := int64(readBuf)
	for si, s := range m.Experts {
		bufSize = max(bufSize, s.Stride)
		for l := range s.Layers {
			n := sz.experts[si][l] / s.Stride
			if sz.experts[si][l] > 0 {
				r.Read.Files++
			}
			total += n * s.Stride
			jobs = append(jobs, job{set: si, layer: l, blocks: int(n)})
		}
	}
	c := &collector{r: r, bar: progress.New(o.Progress, total, "verifying")}
	ch := make(chan job)
	var wg sync.WaitGroup
	for range min(o.Workers, max(len(jobs), 1)) {
		w := &worker{c: c, m: m, src: src, buf: make([]byte, bufSize)}
		wg.Go(func() {
			for j := range ch {
				if j.seg != nil {
					w.checkSegment(o.Model, *j.seg)
				} else {
					w.checkExpertFile(ctx, o.Model, j)
				}
			}
		})
	}
	var err error
feed:
	for _, j := range jobs {
		select {
		case ch <- j:
		case <-ctx.Done():
			err = fmt.Errorf("verification interrupted: %w", ctx.Err())
			break feed
		}
	}
	close(ch)
	wg.Wait()
	c.bar.Finish()
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("verification interrupted: %w", ctx.Err())
	}
	return err
}

// checkExpertFile preads each complete expert block of one layer file and checks its CRC and
// padding (and, with --source, its values).
func (w *worker) checkExpertFile(ctx context.Context, dir string, j job) {
	set := &w.m.Experts[j.set]
	lf := &set.Layers[j.layer]
	name := filepath.Join(set.Dir, lf.File)
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		w.c.add(Problem{Check: "io", File: name, Set: set.Dir, Layer: intp(j.layer), Message: err.Error()})
		return
	}
	defer f.Close()
	gaps := blockGaps(set)
	blk := w.buf[:set.Stride]
	for e := 0; e < j.blocks; e++ {
		if ctx.Err() != nil {
			return
		}
		off := int64(e) * set.Stride
		if _, err := f.ReadAt(blk, off); err != nil {
			w.c.add(Problem{Check: "io", File: name, Set: set.Dir, Layer: intp(j.layer), Expert: intp(e), Offset: int64p(off), Message: err.Error()})
			return
		}
		w.c.progress(set.Stride)
		w.checkBlock(set, name, j.layer, e, blk, gaps)
		w.c.blockDone()
		if w.src != nil {
			w.compareBlock(dir, j.set, j.layer, e, blk)
		}
	}
	if w.src != nil && j.set == 0 {
		w.src.release(j.layer)
	}
}

// gap is a range of an expert block outside every projection component: it must be zero.
type gap struct{ start, end int64 }

func blockGaps(set *format.ExpertSet) []gap {
	var gaps []gap
	pos := int64(0)
	for _, p := range set.Projections {
		for _, s := range p.Spans() { // Validate has checked they are ordered and disjoint
			if s.Span.Offset > pos {
				gaps = append(gaps, gap{pos, s.Span.Offset})
			}
			pos = s.Span.End()
		}
	}
	if pos < set.Stride {
		gaps = append(gaps, gap{pos, set.Stride})
	}
	return gaps
}

// component names the projection and part holding block offset off, or "padding".
func component(set *format.ExpertSet, off int64) (proj, part string) {
	for _, p := range set.Projections {
		for _, s := range p.Spans() {
			if off >= s.Span.Offset && off < s.Span.End() {
				return p.Name, s.Part
			}
		}
	}
	return "padding", ""
}

func (w *worker) checkBlock(set *format.ExpertSet, name string, l, e int, blk []byte, gaps []gap) {
	want, got := set.Layers[l].CRC32C[e], format.CRC32C(blk)
	base := int64(e) * set.Stride
	p := Problem{Check: "checksum", File: name, Set: set.Dir, Layer: intp(l), Expert: intp(e)}
	pad := int64(-1)
	for _, g := range gaps {
		if i := firstNonZero(blk[g.start:g.end]); i >= 0 {
			pad = g.start + int64(i)
			break
		}
	}
	if want == got {
		if pad >= 0 {
			p.Check, p.Projection, p.Offset = "padding", "padding", int64p(base+pad)
			p.Message = fmt.Sprintf("layer %d expert %d: padding byte at block offset %d is 0x%02x, want 0 (the checksum matches: the packer wrote it)", l, e, pad, blk[pad])
			w.c.add(p)
		}
		return
	}
	p.Message = fmt.Sprintf("layer %d expert %d: checksum mismatch (manifest %08x, file %08x)", l, e, want, got)
	if pad >= 0 {
		p.Projection, p.Offset = "padding", int64p(base+pad)
		p.Message += fmt.Sprintf("; padding byte at block offset %d is 0x%02x, want 0", pad, blk[pad])
		w.c.add(p)
		return
	}
	cands := locateByteError(want, got, set.Stride, 4)
	if len(cands) == 0 {
		p.Message += "; more than one byte is damaged, so it cannot be placed inside the block"
		w.c.add(p)
		return
	}
	var where []string
	projs := map[string]bool{}
	for _, c := range cands {
		proj, part := component(set, c.Offset)
		projs[proj] = true
		where = append(where, fmt.Sprintf("%s %s at block offset %d", proj, part, c.Offset))
	}
	if len(cands) == 1 {
		p.Projection, _ = component(set, cands[0].Offset)
		_, p.Part = component(set, cands[0].Offset)
		p.Offset = int64p(base + cands[0].Offset)
		p.Message += "; a single damaged byte in " + where[0]
	} else {
		if len(projs) == 1 {
			p.Projection, _ = component(set, cands[0].Offset)
		}
		p.Message += fmt.Sprintf("; a single damaged byte would be at one of: %v", where)
	}
	w.c.add(p)
}
