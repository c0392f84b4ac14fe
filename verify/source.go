package verify

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/mmap"
	"github.com/fmoe/fmoe/pack"
)

// SourceReport is the --source comparison: the worst error per tensor kind.
type SourceReport struct {
	Dir    string     `json:"dir"`
	Layout string     `json:"layout"`
	Kinds  []KindStat `json:"kinds"`
}

// KindStat aggregates one kind of tensor (a layer tensor with its layer number dropped, or one
// expert projection of one expert set).
type KindStat struct {
	Kind string `json:"kind"`
	// Against is "source", or the expert set a requantised set was made from.
	Against string `json:"against"`
	// Mode is "exact" (bytes equal, or exactly the source rounded to the stored float type) or
	// "bound" (every element within the quantisation bound of its group).
	Mode     string  `json:"mode"`
	Count    int     `json:"count"`
	Failed   int     `json:"failed"`
	MaxAbs   float64 `json:"max_abs_err"`
	MaxRatio float64 `json:"max_err_over_bound,omitempty"` // <= 1 passes
	Worst    string  `json:"worst,omitempty"`              // where MaxAbs (or MaxRatio) occurs
}

type sourceCmp struct {
	ck   *pack.SourceCheckpoint
	m    *format.Manifest
	r    *Report
	spec map[string]format.TensorSpec

	mu    sync.Mutex
	kinds map[string]*KindStat
}

func openSourceCmp(dir string, m *format.Manifest, r *Report) (*sourceCmp, error) {
	ck, err := pack.OpenSource(dir)
	if err != nil {
		return nil, fmt.Errorf("--source: %w", err)
	}
	c := &sourceCmp{ck: ck, m: m, r: r, kinds: map[string]*KindStat{}, spec: map[string]format.TensorSpec{}}
	for _, s := range format.Schema(&m.Config) {
		c.spec[s.Name] = s
	}
	if d := configDiff(ck.Config(), &m.Config); d != "" {
		r.add(Problem{Check: "source", File: format.ManifestName, Message: fmt.Sprintf("the source's config differs from the pack's: %s", d)})
	}
	return c, nil
}

func (c *sourceCmp) close() { c.ck.Close() }

func (c *sourceCmp) release(l int) { c.ck.ReleaseLayer(l) }

// configDiff names the first config field that differs.
func configDiff(a, b *format.Config) string {
	va, vb := reflect.ValueOf(*a), reflect.ValueOf(*b)
	for i := 0; i < va.NumField(); i++ {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			return fmt.Sprintf("%s is %v in the source, %v in the pack", va.Type().Field(i).Tag.Get("json"), va.Field(i).Interface(), vb.Field(i).Interface())
		}
	}
	return ""
}

var layerNum = regexp.MustCompile(`^model\.layers\.\d+\.`)

// kindOf drops the layer number: every layer's q_proj is one kind.
func kindOf(name string) string { return layerNum.ReplaceAllString(name, "") }

func (c *sourceCmp) record(kind, against, where string, res cmpResult, p Problem) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := kind + "\x00" + against
	k := c.kinds[key]
	if k == nil {
		k = &KindStat{Kind: kind, Against: against, Mode: res.mode}
		c.kinds[key] = k
	}
	k.Count++
	if res.mode == "bound" {
		k.Mode = "bound"
	}
	worse := res.maxAbs > k.MaxAbs
	if res.mode == "bound" {
		worse = res.maxRatio > k.MaxRatio
	}
	if worse || k.Worst == "" && (res.maxAbs > 0 || res.maxRatio > 0) {
		k.MaxAbs, k.MaxRatio, k.Worst = max(k.MaxAbs, res.maxAbs), max(k.MaxRatio, res.maxRatio), where
	} else {
		k.MaxAbs = max(k.MaxAbs, res.maxAbs)
	}
	if res.fail != "" {
		k.Failed++
		p.Check = "source"
		p.Message = where + ": " + res.fail
		c.r.add(p)
	}
}

func (c *sourceCmp) report() *SourceReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	sr := &SourceReport{Dir: c.ck.Dir(), Layout: c.ck.Layout(), Kinds: []KindStat{}}
	for _, k := range c.kinds {
		ks := *k
		ks.MaxAbs, ks.MaxRatio = finite(ks.MaxAbs), finite(ks.MaxRatio)
		sr.Kinds = append(sr.Kinds, ks)
	}
	sort.Slice(sr.Kinds, func(i, j int) bool {
		a, b := sr.Kinds[i], sr.Kinds[j]
		if a.Against != b.Against {
			return a.Against > b.Against // "source" first
		}
		return a.Kind < b.Kind
	})
	return sr
}

// finite keeps the JSON report encodable: an infinite error (a NaN or a shape mismatch) is
// reported as the largest float64.
func finite(f float64) float64 {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return math.MaxFloat64
	}
	return f
}

// dense compares every tensor of model_weights.bin with the source. The file is mapped, not
// read through the workers' buffers: it is a few percent of a pack and was just read, so it
// comes from the page cache.
func (c *sourceCmp) dense(ctx context.Context, dir string, weightsOK bool) error {
	if !weightsOK {
		c.r.add(Problem{Check: "source", File: format.WeightsName, Message: "not compared with the source: the file does not have the recorded size"})
		return nil
	}
	wf, err := mmap.Open(filepath.Join(dir, format.WeightsName))
	if err != nil {
		return fmt.Errorf("%s: %w", format.WeightsName, err)
	}
	defer wf.Close()
	if int64(len(wf.Data)) != c.m.Weights.Size {
		// Changed since the size check: mapping past the end would fault.
		return fmt.Errorf("%s changed size during verification", format.WeightsName)
	}
	idx := make(chan int)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			for i := range idx {
				c.denseTensor(&c.m.Tensors[i], wf.Data)
			}
		})
	}
	for i := range c.m.Tensors {
		if ctx.Err() != nil {
			break
		}
		idx <- i
	}
	close(idx)
	wg.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("verification interrupted: %w", ctx.Err())
	}
	return nil
}

func span(b []byte, s *format.Span) []byte {
	if s == nil {
		return nil
	}
	return b[s.Offset:s.End()]
}

// asMatrix views shape as [rows, cols] (1-D: one row).
func asMatrix(shape []int) (rows, cols int) {
	if len(shape) == 0 {
		return 0, 0
	}
	rows, cols = 1, shape[len(shape)-1]
	for _, d := range shape[:len(shape)-1] {
		rows *= d
	}
	return rows, cols
}

func (c *sourceCmp) denseTensor(t *format.Tensor, w []byte) {
	p := Problem{File: format.WeightsName, Tensor: t.Name}
	kind := kindOf(t.Name)
	src, ok := c.ck.Tensor(t.Name)
	if !ok {
		c.record(kind, "source", t.Name, cmpResult{fail: "not in the source checkpoint"}, p)
		return
	}
	rows, cols := asMatrix(t.Shape)
	got := &matrix{rows: rows, cols: cols, dtype: t.DType, bits: t.Bits, group: t.GroupSize, rule: t.Rule,
		data: span(w, &t.Data), scales: span(w, t.Scales), biases: span(w, t.Biases)}
	want := &matrix{rows: rows, cols: cols, dtype: src.DType, data: src.Data}
	if src.DType == format.DTypeU32 {
		base := strings.TrimSuffix(t.Name, ".weight")
		sc, ok1 := c.ck.Tensor(base + ".scales")
		bi, ok2 := c.ck.Tensor(base + ".biases")
		if !ok1 || !ok2 || len(src.Shape) != 2 || len(sc.Shape) != 2 || sc.Shape[1] == 0 {
			c.record(kind, "source", t.Name, cmpResult{fail: fmt.Sprintf("source %s is U32 without usable scales and biases", src.Name)}, p)
			return
		}
		want.scales, want.biases = sc.Data, bi.Data
		want.bits = src.Shape[1] * 32 / cols
		want.group = cols / sc.Shape[1]
	}
	if err := got.check(); err != nil {
		c.record(kind, "source", t.Name, cmpResult{fail: "packed: " + err.Error()}, p)
		return
	}
	if err := want.check(); err != nil {
		c.record(kind, "source", t.Name, cmpResult{fail: fmt.Sprintf("source %s does not match the packed shape %v: %v", src.Name, t.Shape, err)}, p)
		return
	}
	c.record(kind, "source", t.Name, c.compare(got, want, c.spec[t.Name].NormShift && !c.ck.NormShifted()), p)
}

// compare picks the comparison packing implies: a copy of a quantised source is exact, a
// quantisation of a float source is bounded, a float is the source rounded to its stored type.
func (c *sourceCmp) compare(got, want *matrix, shifted bool) cmpResult {
	switch {
	case want.quantized() && (!got.quantized() || got.bits == want.bits && got.group == want.group):
		return compareExact(got, want)
	case got.quantized():
		return compareBound(got, want)
	case shifted:
		return compareRounded(got, want, 1)
	case got.dtype == want.dtype:
		return compareExact(got, want)
	}
	return compareRounded(got, want, 0)
}

// compareBlock compares one expert block: a primary set with the source, a requantised set
// with the primary set it was made from.
func (w *worker) compareBlock(dir string, set, l, e int, blk []byte) {
	c := w.src
	s := &c.m.Experts[set]
	if set > 0 {
		w.compareDerived(dir, s, l, e, blk)
		return
	}
	for i := range s.Projections {
		pr := &s.Projections[i]
		where := fmt.Sprintf("layer %d expert %d %s", l, e, pr.Name)
		p := Problem{File: filepath.Join(s.Dir, s.Layers[l].File), Set: s.Dir, Layer: intp(l), Expert: intp(e), Projection: pr.Name}
		kind := "experts." + pr.Name
		se, err := c.ck.Expert(l, e, pr.Name)
		if err != nil {
			c.record(kind, "source", where, cmpResult{fail: err.Error()}, p)
			continue
		}
		got := projMatrix(pr, blk)
		want := &matrix{rows: pr.Shape[0], cols: pr.Shape[1], dtype: se.DType, bits: se.Bits, group: se.Group, data: se.Data, scales: se.Scales, biases: se.Biases}
		if err := want.check(); err != nil {
			c.record(kind, "source", where, cmpResult{fail: "source: " + err.Error()}, p)
			continue
		}
		c.record(kind, "source", where, c.compare(got, want, false), p)
	}
}

func projMatrix(pr *format.Tensor, blk []byte) *matrix {
	return &matrix{rows: pr.Shape[0], cols: pr.Shape[1], dtype: pr.DType, bits: pr.Bits, group: pr.GroupSize, rule: pr.Rule,
		data: span(blk, &pr.Data), scales: span(blk, pr.Scales), biases: span(blk, pr.Biases)}
}

// compareDerived checks a requantised block against the primary set's block it was made from,
// which is what requantisation promises (its error against the original is the two errors
// added).
func (w *worker) compareDerived(dir string, s *format.ExpertSet, l, e int, blk []byte) {
	c := w.src
	ps := &c.m.Experts[0]
	against := fmt.Sprintf("%s (%d-bit)", ps.Dir, ps.Bits)
	name := filepath.Join(ps.Dir, ps.Layers[l].File)
	w.aux = grow(w.aux, int(ps.Stride))
	p := Problem{File: filepath.Join(s.Dir, s.Layers[l].File), Set: s.Dir, Layer: intp(l), Expert: intp(e)}
	f, err := os.Open(filepath.Join(dir, name))
	if err == nil {
		_, err = f.ReadAt(w.aux, int64(e)*ps.Stride)
		f.Close()
	}
	for i := range s.Projections {
		pr := &s.Projections[i]
		where := fmt.Sprintf("layer %d expert %d %s", l, e, pr.Name)
		kind := fmt.Sprintf("experts.%s %d-bit", pr.Name, s.Bits)
		p.Projection = pr.Name
		if err != nil {
			c.record(kind, against, where, cmpResult{fail: fmt.Sprintf("reading %s: %v", name, err)}, p)
			continue
		}
		ref, perr := ps.Projection(pr.Name)
		if perr != nil {
			c.record(kind, against, where, cmpResult{fail: perr.Error()}, p)
			continue
		}
		c.record(kind, against, where, c.compare(projMatrix(pr, blk), projMatrix(ref, w.aux), false), p)
	}
}
