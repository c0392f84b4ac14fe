package quant

import (
	"math/rand/v2"
	"testing"
)

// benchRows is a [1024, 4096] Gaussian matrix, the shape of one 397B
// expert's gate projection.
func benchRows(b *testing.B) (rows, cols int, w []float32) {
	b.Helper()
	rows, cols = 1024, 4096
	rng := rand.New(rand.NewPCG(7, 7))
	w = make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(rng.NormFloat64() / 64)
	}
	return rows, cols, w
}

// BenchmarkQuantize4 reports float32 input bytes per second for MLX 4-bit.
func BenchmarkQuantize4(b *testing.B) {
	rows, cols, w := benchRows(b)
	m, err := NewMatrix(rows, cols, 4, 64)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(4 * len(w)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Quantize(m, w); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDequantize4 reports float32 output bytes per second.
func BenchmarkDequantize4(b *testing.B) {
	rows, cols, w := benchRows(b)
	m, _ := NewMatrix(rows, cols, 4, 64)
	if err := Quantize(m, w); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(4 * len(w)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Dequantize(w, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequant reports 4-bit -> 2-bit throughput per rule in float32
// bytes of the (implied) dequantised matrix per second.
func BenchmarkRequant(b *testing.B) {
	rows, cols, w := benchRows(b)
	m4, _ := NewMatrix(rows, cols, 4, 64)
	if err := Quantize(m4, w); err != nil {
		b.Fatal(err)
	}
	m2, _ := NewMatrix(rows, cols, 2, 64)
	for _, rule := range Rules {
		b.Run(rule.String(), func(b *testing.B) {
			b.SetBytes(int64(4 * len(w)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Requant(rule, m2, m4); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
