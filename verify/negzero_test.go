package verify

import (
	"testing"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/quant"
)

// TestRoundedKeepsNegativeZero: an F32 source's -0 (FP8 code 0x80 dequantises to it) stored as
// bf16 -0 is the source rounded exactly, not a mismatch.
func TestRoundedKeepsNegativeZero(t *testing.T) {
	src := []float32{float32(negZero()), 1.5, -0.25}
	want := &matrix{rows: 1, cols: 3, dtype: format.DTypeF32, data: make([]byte, 12)}
	got := &matrix{rows: 1, cols: 3, dtype: format.DTypeBF16, data: make([]byte, 6)}
	quant.EncodeFloats(format.DTypeF32, src, want.data)
	quant.EncodeFloats(format.DTypeBF16, src, got.data)
	if r := compareRounded(got, want, 0); r.fail != "" {
		t.Errorf("bf16 -0 against F32 -0: %s", r.fail)
	}
	quant.EncodeFloats(format.DTypeBF16, []float32{0, 1.5, -0.25}, got.data)
	if r := compareRounded(got, want, 0); r.fail == "" {
		t.Error("bf16 +0 against F32 -0 passed as exactly rounded")
	}
}

func negZero() float64 {
	z := 0.0
	return -z
}
