// Package format defines the fmoe packed model layout (docs/format.md): the manifest that
// describes model_weights.bin and the per-layer expert files, how it is checksummed, and the
// checks every reader runs before trusting an offset.
package format

import (
	"fmt"
	"strings"
)

// Version is the manifest version this build writes and the newest it reads.
const Version = 1

// File and directory names inside a packed model directory.
const (
	ManifestName = "model_weights.json"
	WeightsName  = "model_weights.bin"
	ExpertsDir   = "packed_experts"
)

// Alignment of tensors in model_weights.bin and of expert blocks and their components. 4096 lets
// one pread (or an O_DIRECT read) fetch an expert into a page-aligned buffer.
const (
	WeightsAlign = 256
	ExpertAlign  = 4096
)

// Storage dtypes.
const (
	DTypeU32  = "U32" // MLX affine-quantised, packed LSB-first
	DTypeBF16 = "BF16"
	DTypeF16  = "F16"
	DTypeF32  = "F32"
)

// Manifest is model_weights.json.
type Manifest struct {
	Format    string      `json:"format"`
	Version   int         `json:"version"`
	CreatedBy string      `json:"created_by"`
	Source    Source      `json:"source"`
	Config    Config      `json:"config"`
	Weights   WeightsFile `json:"weights"`
	Tensors   []Tensor    `json:"tensors"`
	Experts   []ExpertSet `json:"experts"`
	Files     []SideFile  `json:"files"`
}

// Source records where a pack came from.
type Source struct {
	Layout       string `json:"layout"` // "hf", "hf-vl" or "mlx"
	Architecture string `json:"architecture"`
	// NormShifted says the source already stored 1+w for zero-centred norms (MLX convention).
	NormShifted bool `json:"norm_shifted"`
}

// WeightsFile describes model_weights.bin.
type WeightsFile struct {
	File  string `json:"file"`
	Size  int64  `json:"size"`
	Align int64  `json:"align"`
}

// Span is a byte range with its CRC-32C.
type Span struct {
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	CRC32C uint32 `json:"crc32c"`
}

// End is the first byte after the span. It can overflow for a span that Within has not
// accepted: check that first.
func (s Span) End() int64 { return s.Offset + s.Size }

// Within reports whether the span lies inside [0, limit). It is written so that no operand can
// overflow: a hostile manifest's offset near 2^63 would make Offset+Size wrap negative and pass
// a naive End() <= limit.
func (s Span) Within(limit int64) bool {
	return limit >= 0 && s.Offset >= 0 && s.Size >= 0 && s.Offset <= limit-s.Size
}

// Tensor is one stored tensor: a plain float tensor, or an affine-quantised matrix with its
// scales and biases. Shape is always the logical element shape.
type Tensor struct {
	Name      string `json:"name"`
	DType     string `json:"dtype"`
	Shape     []int  `json:"shape"`
	Bits      int    `json:"bits,omitempty"`
	GroupSize int    `json:"group_size,omitempty"`
	// Rule names the quantisation rule that chose the scales and biases ("minmax", "mlx",
	// "lsq", "seed"); empty when the pack copied them from an already-quantised source.
	Rule   string `json:"rule,omitempty"`
	Data   Span   `json:"data"`
	Scales *Span  `json:"scales,omitempty"`
	Biases *Span  `json:"biases,omitempty"`
}

// Quantized reports whether t is MLX affine-quantised.
func (t *Tensor) Quantized() bool { return t.DType == DTypeU32 }

// Elements is the number of logical elements.
func (t *Tensor) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// Spans lists the byte ranges the tensor occupies, with a label for messages.
func (t *Tensor) Spans() []NamedSpan {
	out := []NamedSpan{{"data", t.Data}}
	if t.Scales != nil {
		out = append(out, NamedSpan{"scales", *t.Scales})
	}
	if t.Biases != nil {
		out = append(out, NamedSpan{"biases", *t.Biases})
	}
	return out
}

// NamedSpan labels a span for error messages.
type NamedSpan struct {
	Part string
	Span Span
}

// ExpertSet is one copy of all routed experts at one bit width.
type ExpertSet struct {
	Bits        int           `json:"bits"`
	Dir         string        `json:"dir"`
	Stride      int64         `json:"stride"`
	Align       int64         `json:"align"`
	Projections []Tensor      `json:"projections"` // gate_proj, up_proj, down_proj; spans relative to the block
	Layers      []ExpertLayer `json:"layers"`
}

// ExpertLayer is one layer file of an expert set.
type ExpertLayer struct {
	File   string   `json:"file"`
	Size   int64    `json:"size"`
	CRC32C []uint32 `json:"crc32c"` // one per expert block, over the whole stride
}

// SetRule records the quantisation rule on every projection of the set.
func (s *ExpertSet) SetRule(rule string) {
	for i := range s.Projections {
		s.Projections[i].Rule = rule
	}
}

// Projection returns the named projection ("gate_proj", "up_proj", "down_proj").
func (s *ExpertSet) Projection(name string) (*Tensor, error) {
	for i := range s.Projections {
		if s.Projections[i].Name == name {
			return &s.Projections[i], nil
		}
	}
	return nil, fmt.Errorf("expert set %s: no projection %q", s.Dir, name)
}

// SideFile is a file copied from the source (tokenizer, template, config).
type SideFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	CRC32C uint32 `json:"crc32c"`
}

// ExpertProjections is the order of projections inside an expert block.
var ExpertProjections = []string{"gate_proj", "up_proj", "down_proj"}

// LayerFileName is the expert file name of layer l.
func LayerFileName(l int) string { return fmt.Sprintf("layer_%02d.bin", l) }

// ExpertSetDir is the directory of an expert set at the given bits relative to the pack's own.
func ExpertSetDir(bits, primaryBits int) string {
	if bits == primaryBits {
		return ExpertsDir
	}
	return fmt.Sprintf("%s_%dbit", ExpertsDir, bits)
}

// Tensor looks a tensor up by canonical name.
func (m *Manifest) Tensor(name string) (*Tensor, error) {
	for i := range m.Tensors {
		if m.Tensors[i].Name == name {
			return &m.Tensors[i], nil
		}
	}
	return nil, fmt.Errorf("%s: no tensor %q", ManifestName, name)
}

// TensorIndex maps names to entries, for readers that look up many tensors.
func (m *Manifest) TensorIndex() map[string]*Tensor {
	idx := make(map[string]*Tensor, len(m.Tensors))
	for i := range m.Tensors {
		idx[m.Tensors[i].Name] = &m.Tensors[i]
	}
	return idx
}

// ExpertSet returns the set stored at the given bits.
func (m *Manifest) ExpertSet(bits int) (*ExpertSet, error) {
	var have []string
	for i := range m.Experts {
		if m.Experts[i].Bits == bits {
			return &m.Experts[i], nil
		}
		have = append(have, fmt.Sprint(m.Experts[i].Bits))
	}
	return nil, fmt.Errorf("%s: no %d-bit expert set (have %s bits)", ManifestName, bits, strings.Join(have, ", "))
}
