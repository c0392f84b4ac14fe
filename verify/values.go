package verify

import (
	"bytes"
	"fmt"
	"math"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/quant"
)

// matrix is a stored tensor seen as rows of float32: quantised (U32 with scales and biases) or
// plain floats. Tensors of other ranks are viewed as [product of leading dims, last dim], so a
// norm vector is one row. Rows are decoded one at a time: the largest tensors (397B's embedding)
// would take gigabytes as float32.
type matrix struct {
	rows, cols           int
	dtype                string
	bits, group          int
	rule                 string // quantisation rule of got, "" if unknown
	data, scales, biases []byte
}

func (m *matrix) quantized() bool { return m.dtype == format.DTypeU32 }

// check confirms the byte lengths match the shape, so row slicing cannot go out of range on a
// pack or checkpoint whose metadata lies.
func (m *matrix) check() error {
	if m.rows <= 0 || m.cols <= 0 {
		return fmt.Errorf("shape [%d, %d]", m.rows, m.cols)
	}
	if m.quantized() {
		if err := quant.CheckLayout(m.cols, m.bits, m.group); err != nil {
			return err
		}
		g := int64(m.rows) * int64(m.cols/m.group) * 2
		if int64(len(m.data)) != int64(m.rows)*int64(m.cols)*int64(m.bits)/8 || int64(len(m.scales)) != g || int64(len(m.biases)) != g {
			return fmt.Errorf("%d-bit [%d, %d] group %d: %d data, %d scale, %d bias bytes do not match", m.bits, m.rows, m.cols, m.group, len(m.data), len(m.scales), len(m.biases))
		}
		return nil
	}
	es, err := quant.ElemSize(m.dtype)
	if err != nil {
		return err
	}
	if int64(len(m.data)) != int64(m.rows)*int64(m.cols)*int64(es) {
		return fmt.Errorf("%s [%d, %d]: %d bytes", m.dtype, m.rows, m.cols, len(m.data))
	}
	return nil
}

// rowScratch holds one row's decoding buffers.
type rowScratch struct {
	words          []uint32
	scales, biases []uint16
}

func (m *matrix) row(r int, dst []float32, s *rowScratch) error {
	if !m.quantized() {
		es, _ := quant.ElemSize(m.dtype)
		return quant.DecodeFloats(m.dtype, m.data[r*m.cols*es:(r+1)*m.cols*es], dst)
	}
	wpr, gpr := m.cols*m.bits/32, m.cols/m.group
	s.words = grow(s.words, wpr)
	s.scales, s.biases = grow(s.scales, gpr), grow(s.biases, gpr)
	quant.DecodeUint32s(m.data[r*wpr*4:(r+1)*wpr*4], s.words)
	quant.DecodeUint16s(m.scales[r*gpr*2:(r+1)*gpr*2], s.scales)
	quant.DecodeUint16s(m.biases[r*gpr*2:(r+1)*gpr*2], s.biases)
	return quant.DequantizeRow(s.words, s.scales, s.biases, m.bits, m.group, dst)
}

func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

// cmpResult is how far a packed tensor is from its reference.
type cmpResult struct {
	mode     string  // "exact" or "bound"
	maxAbs   float64 // worst |packed - reference|
	maxRatio float64 // worst |packed - reference| / bound (bound mode)
	fail     string  // the first failure, empty when it passes
}

// compareExact requires equal bytes; on a difference it decodes the first differing element
// for the message.
func compareExact(got, want *matrix) cmpResult {
	res := cmpResult{mode: "exact"}
	if got.dtype != want.dtype || got.bits != want.bits || got.group != want.group {
		res.fail = fmt.Sprintf("stored as %s, the source as %s, where packing should copy it", describe(got), describe(want))
		return res
	}
	for _, part := range []struct {
		name string
		a, b []byte
	}{{"data", got.data, want.data}, {"scales", got.scales, want.scales}, {"biases", got.biases, want.biases}} {
		if bytes.Equal(part.a, part.b) {
			continue
		}
		i := 0
		for i < len(part.a) && i < len(part.b) && part.a[i] == part.b[i] {
			i++
		}
		if res.fail == "" {
			res.fail = fmt.Sprintf("%s differs from the source at byte %d (packing copies it byte for byte)", part.name, i)
		}
	}
	if res.fail != "" {
		// Quantify the damage for the worst-error table.
		res.maxAbs = maxAbsDiff(got, want, nil)
	}
	return res
}

// compareRounded requires got to be exactly the source rounded to got's float dtype, with add
// applied first (1 for norms the packer shifts to 1+w).
func compareRounded(got, want *matrix, add float32) cmpResult {
	res := cmpResult{mode: "exact"}
	var s rowScratch
	g, w := make([]float32, got.cols), make([]float32, want.cols)
	es, _ := quant.ElemSize(got.dtype)
	enc := make([]byte, got.cols*es)
	for r := 0; r < got.rows; r++ {
		if err := got.row(r, g, &s); err != nil {
			res.fail = err.Error()
			return res
		}
		if err := want.row(r, w, &s); err != nil {
			res.fail = err.Error()
			return res
		}
		if add != 0 { // -0 + 0 is +0: adding nothing would turn a source's -0 into a mismatch
			for i := range w {
				w[i] += add
			}
		}
		quant.EncodeFloats(got.dtype, w, enc)
		if bytes.Equal(enc, got.data[r*got.cols*es:(r+1)*got.cols*es]) {
			continue
		}
		for c := range g {
			if d := math.Abs(float64(g[c]) - float64(w[c])); d > res.maxAbs || math.IsNaN(d) {
				res.maxAbs = d
			}
			if res.fail == "" && math.Float32bits(g[c]) != math.Float32bits(roundTo(got.dtype, w[c])) {
				res.fail = fmt.Sprintf("element [%d, %d] is %v, want %v exactly", r, c, g[c], roundTo(got.dtype, w[c]))
			}
		}
	}
	return res
}

func roundTo(dtype string, f float32) float32 {
	switch dtype {
	case format.DTypeBF16:
		return quant.BF16ToF32(quant.F32ToBF16(f))
	case format.DTypeF16:
		return quant.F16ToF32(quant.F32ToF16(f))
	}
	return f
}

// compareBound requires every element of the quantised got to be within the quantisation bound
// of its reference group: the bound of the rule the manifest records, or the loosest of quant's
// rules when it records none (data copied from an already-quantised source).
func compareBound(got, want *matrix) cmpResult {
	res := cmpResult{mode: "bound"}
	var s rowScratch
	g, w := make([]float32, got.cols), make([]float32, want.cols)
	for r := 0; r < got.rows; r++ {
		if err := got.row(r, g, &s); err != nil {
			res.fail = err.Error()
			return res
		}
		if err := want.row(r, w, &s); err != nil {
			res.fail = err.Error()
			return res
		}
		for c0 := 0; c0 < got.cols; c0 += got.group {
			grp := w[c0 : c0+got.group]
			lo, hi := grp[0], grp[0]
			for _, v := range grp {
				lo, hi = min(lo, v), max(hi, v)
			}
			bound := ruleBound(got.rule, got.bits, lo, hi)
			for c := c0; c < c0+got.group; c++ {
				d := math.Abs(float64(g[c]) - float64(w[c]))
				if math.IsNaN(d) {
					d = math.Inf(1)
				}
				res.maxAbs = max(res.maxAbs, d)
				// Judged in float32, as quant states and enforces its bound: the float64
				// difference of two float32 values can exceed a bound its rounding meets.
				res.maxRatio = max(res.maxRatio, float64(float32(d))/float64(bound))
				if float32(d) > bound && res.fail == "" {
					res.fail = fmt.Sprintf("element [%d, %d] is %v, the reference %v: error %.3g exceeds the %d-bit bound %.3g of its group [%v, %v]", r, c, g[c], w[c], d, got.bits, bound, lo, hi)
				}
			}
		}
	}
	return res
}

func ruleBound(rule string, bits int, lo, hi float32) float32 {
	if r, err := quant.ParseRule(rule); err == nil {
		return quant.ErrorBound(r, bits, lo, hi)
	}
	return loosestBound(bits, lo, hi)
}

func loosestBound(bits int, lo, hi float32) float32 {
	var b float32
	for _, r := range quant.Rules {
		b = max(b, quant.ErrorBound(r, bits, lo, hi))
	}
	return b
}

// maxAbsDiff decodes both matrices (when their shapes agree) and returns the worst difference.
func maxAbsDiff(a, b *matrix, _ []float32) float64 {
	if a.rows != b.rows || a.cols != b.cols || a.check() != nil || b.check() != nil {
		return math.Inf(1)
	}
	var s rowScratch
	x, y := make([]float32, a.cols), make([]float32, b.cols)
	worst := 0.0
	for r := 0; r < a.rows; r++ {
		if a.row(r, x, &s) != nil || b.row(r, y, &s) != nil {
			return math.Inf(1)
		}
		for i := range x {
			d := math.Abs(float64(x[i]) - float64(y[i]))
			if math.IsNaN(d) {
				d = math.Inf(1)
			}
			worst = max(worst, d)
		}
	}
	return worst
}

func describe(m *matrix) string {
	if m.quantized() {
		return fmt.Sprintf("%d-bit group %d", m.bits, m.group)
	}
	return m.dtype
}
