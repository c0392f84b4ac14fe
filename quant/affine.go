package quant

import (
	"fmt"
	"math"
)

// MaxGroup is the largest supported group size; per-group scratch buffers
// live on the stack at this size so the hot paths never allocate.
const MaxGroup = 128

// CheckLayout reports whether a row of cols values can be quantised at bits
// (2, 4 or 8) with groups of group (32, 64 or 128) values. cols must be a
// positive multiple of group; since every supported group is a multiple of
// 32, that also makes cols divisible by 32/bits, so packed words are full.
func CheckLayout(cols, bits, group int) error {
	switch bits {
	case 2, 4, 8:
	default:
		return fmt.Errorf("quant: unsupported bits %d (want 2, 4 or 8)", bits)
	}
	switch group {
	case 32, 64, 128:
	default:
		return fmt.Errorf("quant: unsupported group size %d (want 32, 64 or 128)", group)
	}
	if cols <= 0 {
		return fmt.Errorf("quant: row length %d is not positive", cols)
	}
	if cols%group != 0 {
		return fmt.Errorf("quant: row length %d is not divisible by group size %d", cols, group)
	}
	return nil
}

// RowWords is the number of packed uint32 words in a row of cols values.
func RowWords(cols, bits int) int { return cols * bits / 32 }

// RowGroups is the number of scale/bias pairs in a row of cols values.
func RowGroups(cols, group int) int { return cols / group }

// checkRow validates a row's layout and that its slices have exactly the
// lengths that layout implies, so a caller's off-by-a-group bug is an error
// rather than silently truncated output.
func checkRow(cols, bits, group, words, scales, biases int) error {
	if err := CheckLayout(cols, bits, group); err != nil {
		return err
	}
	if w := RowWords(cols, bits); words != w {
		return fmt.Errorf("quant: %d packed words for %d %d-bit values, want %d", words, cols, bits, w)
	}
	g := RowGroups(cols, group)
	if scales != g || biases != g {
		return fmt.Errorf("quant: %d scales and %d biases for %d groups", scales, biases, g)
	}
	return nil
}

// QuantizeRow quantises one row with the MLX affine rule (RuleMLX), bit-exact
// with the reference Python quantiser. len(w) is the row length; packed must
// hold RowWords words and scales/biases RowGroups bf16 values each.
func QuantizeRow(w []float32, bits, group int, packed []uint32, scales, biases []uint16) error {
	return QuantizeRowWith(RuleMLX, w, bits, group, packed, scales, biases)
}

// QuantizeRowWith is QuantizeRow with an explicit rule for choosing each
// group's scale and bias. Non-finite inputs are an error.
func QuantizeRowWith(rule Rule, w []float32, bits, group int, packed []uint32, scales, biases []uint16) error {
	if err := rule.check(); err != nil {
		return err
	}
	if err := checkRow(len(w), bits, group, len(packed), len(scales), len(biases)); err != nil {
		return err
	}
	wpg := group * bits / 32
	for g := range scales {
		x := w[g*group : (g+1)*group]
		out := packed[g*wpg : (g+1)*wpg]
		s, b, err := quantizeGroup(rule, x, bits, out)
		if err != nil {
			return fmt.Errorf("quant: group at column %d: %w", g*group, err)
		}
		scales[g], biases[g] = s, b
	}
	return nil
}

// DequantizeRow expands one packed row into dst (len(dst) is the row length)
// as float32(q)*scale + bias with the product rounded before the add, which
// is what MLX and the runtime kernels compute.
func DequantizeRow(packed []uint32, scales, biases []uint16, bits, group int, dst []float32) error {
	if err := checkRow(len(dst), bits, group, len(packed), len(scales), len(biases)); err != nil {
		return err
	}
	dequantizeRow(packed, scales, biases, bits, group, dst)
	return nil
}

// dequantizeRow is DequantizeRow without validation.
func dequantizeRow(packed []uint32, scales, biases []uint16, bits, group int, dst []float32) {
	wpg := group * bits / 32
	for g := range scales {
		dequantizeGroup(packed[g*wpg:(g+1)*wpg], BF16ToF32(scales[g]), BF16ToF32(biases[g]), bits, dst[g*group:(g+1)*group])
	}
}

func dequantizeGroup(words []uint32, s, b float32, bits int, dst []float32) {
	switch bits {
	case 4:
		dst = dst[:8*len(words)]
		for i, v := range words {
			d := dst[8*i : 8*i+8]
			d[0] = float32(float32(v&15)*s) + b
			d[1] = float32(float32(v>>4&15)*s) + b
			d[2] = float32(float32(v>>8&15)*s) + b
			d[3] = float32(float32(v>>12&15)*s) + b
			d[4] = float32(float32(v>>16&15)*s) + b
			d[5] = float32(float32(v>>20&15)*s) + b
			d[6] = float32(float32(v>>24&15)*s) + b
			d[7] = float32(float32(v>>28)*s) + b
		}
	default:
		per := 32 / bits
		mask := uint32(1)<<bits - 1
		for i, v := range words {
			d := dst[per*i : per*i+per]
			for j := range d {
				d[j] = float32(float32(v&mask)*s) + b
				v >>= bits
			}
		}
	}
}

// packGroup assigns every value its level q = clamp(RNE((x-b)/s), 0, n) and
// packs the levels LSB-first. Unrolled per width: constant shifts make it
// about a third faster than a loop with a variable shift.
func packGroup(x []float32, s, b float32, bits int, out []uint32) {
	nf := float32(int(1)<<bits - 1)
	switch bits {
	case 2:
		x = x[:16*len(out)]
		for i := range out {
			v := x[16*i : 16*i+16 : 16*i+16]
			out[i] = level(v[0], s, b, nf) | level(v[1], s, b, nf)<<2 |
				level(v[2], s, b, nf)<<4 | level(v[3], s, b, nf)<<6 |
				level(v[4], s, b, nf)<<8 | level(v[5], s, b, nf)<<10 |
				level(v[6], s, b, nf)<<12 | level(v[7], s, b, nf)<<14 |
				level(v[8], s, b, nf)<<16 | level(v[9], s, b, nf)<<18 |
				level(v[10], s, b, nf)<<20 | level(v[11], s, b, nf)<<22 |
				level(v[12], s, b, nf)<<24 | level(v[13], s, b, nf)<<26 |
				level(v[14], s, b, nf)<<28 | level(v[15], s, b, nf)<<30
		}
	case 4:
		x = x[:8*len(out)]
		for i := range out {
			v := x[8*i : 8*i+8 : 8*i+8]
			out[i] = level(v[0], s, b, nf) | level(v[1], s, b, nf)<<4 |
				level(v[2], s, b, nf)<<8 | level(v[3], s, b, nf)<<12 |
				level(v[4], s, b, nf)<<16 | level(v[5], s, b, nf)<<20 |
				level(v[6], s, b, nf)<<24 | level(v[7], s, b, nf)<<28
		}
	default:
		per := 32 / bits
		x = x[:per*len(out)]
		for i := range out {
			var word uint32
			for j, v := range x[per*i : per*i+per] {
				word |= level(v, s, b, nf) << (bits * j)
			}
			out[i] = word
		}
	}
}

// level is one value's level. The division (not a reciprocal multiply) and
// the float32 rounding of x-b are what torch does, so ties land the same way.
func level(x, s, b, nf float32) uint32 {
	t := float32(x-b) / s
	if !(t > 0) { // also maps NaN to level 0
		t = 0
	} else if t > nf {
		t = nf
	}
	// t is in [0, 255]; adding 2^23 makes the float32 adder round to the
	// nearest integer, ties to even, like torch.round.
	return math.Float32bits(float32(t+0x1p23)) - 0x4b000000
}

// Matrix is a row-major quantised matrix in MLX layout. A stacked expert
// tensor [E, out, in] is E matrices laid end to end.
type Matrix struct {
	Rows, Cols, Bits, Group int
	Weight                  []uint32 // Rows*RowWords(Cols, Bits) words
	Scales, Biases          []uint16 // Rows*RowGroups(Cols, Group) bf16 each
}

// NewMatrix allocates a zeroed matrix after validating its layout.
func NewMatrix(rows, cols, bits, group int) (*Matrix, error) {
	if err := CheckLayout(cols, bits, group); err != nil {
		return nil, err
	}
	if rows <= 0 {
		return nil, fmt.Errorf("quant: row count %d is not positive", rows)
	}
	g := rows * RowGroups(cols, group)
	return &Matrix{
		Rows: rows, Cols: cols, Bits: bits, Group: group,
		Weight: make([]uint32, rows*RowWords(cols, bits)),
		Scales: make([]uint16, g),
		Biases: make([]uint16, g),
	}, nil
}

// Check validates the layout and that the slices match the shape.
func (m *Matrix) Check() error {
	if m == nil {
		return fmt.Errorf("quant: nil matrix")
	}
	if err := CheckLayout(m.Cols, m.Bits, m.Group); err != nil {
		return err
	}
	if m.Rows <= 0 {
		return fmt.Errorf("quant: row count %d is not positive", m.Rows)
	}
	if w := m.Rows * RowWords(m.Cols, m.Bits); len(m.Weight) != w {
		return fmt.Errorf("quant: matrix [%d, %d] at %d bits needs %d words, has %d", m.Rows, m.Cols, m.Bits, w, len(m.Weight))
	}
	g := m.Rows * RowGroups(m.Cols, m.Group)
	if len(m.Scales) != g || len(m.Biases) != g {
		return fmt.Errorf("quant: matrix [%d, %d] with group %d needs %d scales and biases, has %d and %d",
			m.Rows, m.Cols, m.Group, g, len(m.Scales), len(m.Biases))
	}
	return nil
}

// row returns row r's slices; m must have passed Check.
func (m *Matrix) row(r int) (packed []uint32, scales, biases []uint16) {
	w, g := RowWords(m.Cols, m.Bits), RowGroups(m.Cols, m.Group)
	return m.Weight[r*w : (r+1)*w], m.Scales[r*g : (r+1)*g], m.Biases[r*g : (r+1)*g]
}

// Quantize fills dst from the row-major float32 matrix src with the MLX rule.
func Quantize(dst *Matrix, src []float32) error {
	return QuantizeWith(RuleMLX, dst, src)
}

// QuantizeWith fills dst from src choosing each group's scale and bias by rule.
func QuantizeWith(rule Rule, dst *Matrix, src []float32) error {
	if err := dst.Check(); err != nil {
		return err
	}
	if len(src) != dst.Rows*dst.Cols {
		return fmt.Errorf("quant: %d source values for a [%d, %d] matrix", len(src), dst.Rows, dst.Cols)
	}
	for r := 0; r < dst.Rows; r++ {
		p, s, b := dst.row(r)
		if err := QuantizeRowWith(rule, src[r*dst.Cols:(r+1)*dst.Cols], dst.Bits, dst.Group, p, s, b); err != nil {
			return fmt.Errorf("%w (row %d)", err, r)
		}
	}
	return nil
}

// Dequantize expands src into the row-major float32 matrix dst.
func Dequantize(dst []float32, src *Matrix) error {
	if err := src.Check(); err != nil {
		return err
	}
	if len(dst) != src.Rows*src.Cols {
		return fmt.Errorf("quant: %d destination values for a [%d, %d] matrix", len(dst), src.Rows, src.Cols)
	}
	for r := 0; r < src.Rows; r++ {
		p, s, b := src.row(r)
		dequantizeRow(p, s, b, src.Bits, src.Group, dst[r*src.Cols:(r+1)*src.Cols])
	}
	return nil
}
