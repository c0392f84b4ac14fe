package format

import (
	"fmt"
	"math"
	"slices"
	"sort"
)

// Validate checks a manifest's internal consistency: the config, every tensor against the
// schema the config implies, every range inside its file, aligned and not overlapping, and
// every expert set's layout. It reads no file.
func Validate(m *Manifest) error {
	if err := m.Config.Validate(); err != nil {
		return fmt.Errorf("%s: config: %w", ManifestName, err)
	}
	if err := validateTensors(m); err != nil {
		return fmt.Errorf("%s: %w", ManifestName, err)
	}
	if len(m.Experts) == 0 {
		return fmt.Errorf("%s: no expert set", ManifestName)
	}
	if err := validatePaths(m); err != nil {
		return fmt.Errorf("%s: %w", ManifestName, err)
	}
	for i := range m.Experts {
		if err := validateExpertSet(&m.Config, &m.Experts[i]); err != nil {
			return fmt.Errorf("%s: expert set %q: %w", ManifestName, m.Experts[i].Dir, err)
		}
	}
	return nil
}

func validateTensors(m *Manifest) error {
	if m.Weights.File != WeightsName {
		return fmt.Errorf("weights.file is %q, want %q", m.Weights.File, WeightsName)
	}
	if m.Weights.Size < 0 || m.Weights.Align != WeightsAlign {
		return fmt.Errorf("weights: size %d, align %d: want a non-negative size and align %d", m.Weights.Size, m.Weights.Align, WeightsAlign)
	}
	idx := m.TensorIndex()
	if len(idx) != len(m.Tensors) {
		return fmt.Errorf("duplicate tensor names")
	}
	want := Schema(&m.Config)
	for _, spec := range want {
		t, ok := idx[spec.Name]
		if !ok {
			return fmt.Errorf("tensor %s is missing", spec.Name)
		}
		if !slices.Equal(t.Shape, spec.Shape) {
			return fmt.Errorf("tensor %s has shape %v, the config implies %v", spec.Name, t.Shape, spec.Shape)
		}
	}
	if len(want) != len(m.Tensors) {
		names := map[string]bool{}
		for _, s := range want {
			names[s.Name] = true
		}
		for _, t := range m.Tensors {
			if !names[t.Name] {
				return fmt.Errorf("tensor %s is not part of the model the config describes", t.Name)
			}
		}
	}
	var spans []labelled
	for i := range m.Tensors {
		t := &m.Tensors[i]
		if err := checkTensorLayout(t, m.Weights.Size, WeightsAlign); err != nil {
			return fmt.Errorf("tensor %s: %w", t.Name, err)
		}
		for _, s := range t.Spans() {
			spans = append(spans, labelled{t.Name + " " + s.Part, s.Span})
		}
	}
	return checkOverlap(spans, WeightsName)
}

// knownRules are the quantisation rules package quant implements ("" for copied data).
var knownRules = map[string]bool{"": true, "minmax": true, "mlx": true, "lsq": true, "seed": true}

type labelled struct {
	name string
	span Span
}

func checkOverlap(spans []labelled, file string) error {
	sort.Slice(spans, func(i, j int) bool { return spans[i].span.Offset < spans[j].span.Offset })
	for i := 1; i < len(spans); i++ {
		if spans[i].span.Offset < spans[i-1].span.End() {
			return fmt.Errorf("%s: %s overlaps %s", file, spans[i].name, spans[i-1].name)
		}
	}
	return nil
}

// checkTensorLayout checks sizes against dtype and shape, and that every range is aligned and
// inside [0, limit).
func checkTensorLayout(t *Tensor, limit, align int64) error {
	size, err := DataSize(t.DType, t.Shape, t.Bits)
	if err != nil {
		return err
	}
	want := []struct {
		part string
		span *Span
		size int64
	}{{"data", &t.Data, size}}
	if t.Quantized() {
		gs, err := GroupParamSize(t.Shape, t.GroupSize)
		if err != nil {
			return err
		}
		if t.Scales == nil || t.Biases == nil {
			return fmt.Errorf("quantised tensor without scales or biases")
		}
		want = append(want, struct {
			part string
			span *Span
			size int64
		}{"scales", t.Scales, gs}, struct {
			part string
			span *Span
			size int64
		}{"biases", t.Biases, gs})
	} else if t.Scales != nil || t.Biases != nil || t.Bits != 0 || t.Rule != "" {
		return fmt.Errorf("dtype %s has quantisation fields", t.DType)
	}
	if !knownRules[t.Rule] {
		return fmt.Errorf("unknown quantisation rule %q", t.Rule)
	}
	for _, w := range want {
		s := w.span
		switch {
		case s.Size != w.size:
			return fmt.Errorf("%s is %d bytes, dtype %s shape %v needs %d", w.part, s.Size, t.DType, t.Shape, w.size)
		case !s.Within(limit):
			return fmt.Errorf("%s at offset %d (%d bytes) is outside the file (%d bytes)", w.part, s.Offset, s.Size, limit)
		case s.Offset%align != 0:
			return fmt.Errorf("%s offset %d is not a multiple of %d", w.part, s.Offset, align)
		}
	}
	return nil
}

func validateExpertSet(c *Config, s *ExpertSet) error {
	if s.Align != ExpertAlign || s.Stride <= 0 || s.Stride%s.Align != 0 {
		return fmt.Errorf("stride %d / align %d: want align %d and a positive stride that is a multiple of it", s.Stride, s.Align, ExpertAlign)
	}
	if s.Bits != 2 && s.Bits != 4 && s.Bits != 8 && s.Bits != 16 {
		return fmt.Errorf("bits %d, want 2, 4, 8 or 16", s.Bits)
	}
	if len(s.Projections) != len(ExpertProjections) {
		return fmt.Errorf("%d projections, want %v", len(s.Projections), ExpertProjections)
	}
	var spans []labelled
	for i, name := range ExpertProjections {
		p := &s.Projections[i]
		if p.Name != name {
			return fmt.Errorf("projection %d is %q, want %q", i, p.Name, name)
		}
		shape, _ := ExpertShape(c, name)
		if !slices.Equal(p.Shape, shape) {
			return fmt.Errorf("projection %s has shape %v, the config implies %v", name, p.Shape, shape)
		}
		wantDType := DTypeU32
		if s.Bits == 16 {
			wantDType = DTypeBF16
		} else if p.Bits != s.Bits {
			return fmt.Errorf("projection %s is %d-bit in a %d-bit set", name, p.Bits, s.Bits)
		}
		if p.DType != wantDType {
			return fmt.Errorf("projection %s dtype %s, want %s", name, p.DType, wantDType)
		}
		if err := checkTensorLayout(p, s.Stride, s.Align); err != nil {
			return fmt.Errorf("projection %s: %w", name, err)
		}
		for _, sp := range p.Spans() {
			spans = append(spans, labelled{name + " " + sp.Part, sp.Span})
		}
	}
	if err := checkOverlap(spans, "expert block"); err != nil {
		return err
	}
	// The packer's stride is the last component's end rounded up to the alignment: a larger
	// one would only make every reader allocate and read more.
	end := int64(0)
	for _, sp := range spans {
		end = max(end, sp.span.End())
	}
	if s.Stride-end >= s.Align {
		return fmt.Errorf("stride %d leaves %d unused bytes after the last component (at most %d)", s.Stride, s.Stride-end, s.Align-1)
	}
	if s.Stride > math.MaxInt64/int64(c.NumExperts) {
		return fmt.Errorf("stride %d x %d experts overflows a file size", s.Stride, c.NumExperts)
	}
	if len(s.Layers) != c.NumHiddenLayers {
		return fmt.Errorf("%d layer files, the config has %d layers", len(s.Layers), c.NumHiddenLayers)
	}
	for l, lf := range s.Layers {
		if lf.File != LayerFileName(l) {
			return fmt.Errorf("layer %d file is %q, want %q", l, lf.File, LayerFileName(l))
		}
		n := c.LayerExperts(l) // 0 for a dense layer: an empty file
		if lf.Size != int64(n)*s.Stride {
			return fmt.Errorf("%s: size %d, want %d experts x stride %d", lf.File, lf.Size, n, s.Stride)
		}
		if len(lf.CRC32C) != n {
			return fmt.Errorf("%s: %d checksums, want one per expert (%d)", lf.File, len(lf.CRC32C), n)
		}
	}
	return nil
}
