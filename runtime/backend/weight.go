package backend

import (
	"fmt"
	"math"
)

// Format is the storage format of a weight matrix.
type Format uint8

const (
	FormatInvalid Format = iota
	// Q2, Q4 and Q8 are MLX affine quantisation: each row is Cols*bits/32
	// little-endian uint32 words, element j of a word at bits [bits*j,
	// bits*(j+1)) (LSB first); each group of Group consecutive columns has
	// a bf16 scale and bias and w = q*scale + bias.
	Q2
	Q4
	Q8
	// BF16, F16 and F32 are dense little-endian row-major matrices.
	BF16
	F16
	F32
)

// Bits is the number of bits per element.
func (f Format) Bits() int {
	switch f {
	case Q2:
		return 2
	case Q4:
		return 4
	case Q8:
		return 8
	case BF16, F16:
		return 16
	case F32:
		return 32
	}
	return 0
}

// Quantized reports whether f is an affine quantised format.
func (f Format) Quantized() bool { return f == Q2 || f == Q4 || f == Q8 }

func (f Format) String() string {
	switch f {
	case Q2:
		return "q2"
	case Q4:
		return "q4"
	case Q8:
		return "q8"
	case BF16:
		return "bf16"
	case F16:
		return "f16"
	case F32:
		return "f32"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// QuantFormat returns the affine format with the given bit width.
func QuantFormat(bits int) (Format, error) {
	switch bits {
	case 2:
		return Q2, nil
	case 4:
		return Q4, nil
	case 8:
		return Q8, nil
	}
	return FormatInvalid, fmt.Errorf("backend: unsupported affine bit width %d (want 2, 4 or 8)", bits)
}

// Weight describes a [Rows, Cols] matrix stored in bytes the backend uses in
// place (little-endian, as in the files). Scales and Biases are used only by
// the quantised formats.
type Weight struct {
	Rows, Cols int
	Format     Format
	Group      int // columns per scale/bias group (quantised formats)
	Data       []byte
	Scales     []byte // bf16 [Rows, Cols/Group]
	Biases     []byte // bf16 [Rows, Cols/Group]
}

// RowBytes is the size of one row of Data.
func (w Weight) RowBytes() int { return w.Cols * w.Format.Bits() / 8 }

// Groups is the number of scale groups per row.
func (w Weight) Groups() int {
	if w.Group <= 0 {
		return 0
	}
	return w.Cols / w.Group
}

// Check reports whether the descriptor is self-consistent.
func (w Weight) Check() error {
	if w.Rows <= 0 || w.Cols <= 0 {
		return fmt.Errorf("backend: weight shape [%d, %d] is not positive", w.Rows, w.Cols)
	}
	bits := w.Format.Bits()
	if bits == 0 {
		return fmt.Errorf("backend: weight [%d, %d] has invalid format %v", w.Rows, w.Cols, w.Format)
	}
	if w.Format.Quantized() {
		per := 32 / bits
		if w.Group <= 0 || w.Group%per != 0 {
			return fmt.Errorf("backend: %v weight group %d is not a positive multiple of %d", w.Format, w.Group, per)
		}
		if w.Cols%w.Group != 0 {
			return fmt.Errorf("backend: %v weight cols %d not a multiple of group %d", w.Format, w.Cols, w.Group)
		}
		sb := w.Rows * w.Groups() * 2
		if len(w.Scales) != sb || len(w.Biases) != sb {
			return fmt.Errorf("backend: %v weight [%d, %d] group %d needs %d scale and bias bytes, have %d and %d",
				w.Format, w.Rows, w.Cols, w.Group, sb, len(w.Scales), len(w.Biases))
		}
	}
	if n := w.Rows * w.RowBytes(); len(w.Data) != n {
		return fmt.Errorf("backend: %v weight [%d, %d] needs %d data bytes, have %d", w.Format, w.Rows, w.Cols, n, len(w.Data))
	}
	return nil
}

// BF16ToF32 converts a bfloat16 bit pattern to float32 (exact).
func BF16ToF32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// F16ToF32 converts an IEEE half-precision bit pattern to float32 (exact).
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
	case man == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal half: value = man * 2^-24, exactly representable in f32.
	v := float32(man) * (1.0 / (1 << 24))
	if sign != 0 {
		v = -v
	}
	return v
}
