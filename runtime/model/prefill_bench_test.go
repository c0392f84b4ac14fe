package model

import (
	"testing"

	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// BenchmarkPrefill512 times a 512-token prompt (ids 1..512) through the
// built-in model (models/fmoe-tiny-chat, packed from its mlx-4bit folder)
// on the CPU backend, with the DeltaNet recurrence sequential (the default
// with vector kernels) and chunked. tok/s is prompt tokens per wall second.
func BenchmarkPrefill512(b *testing.B) {
	dir := packed(b, "../../models/fmoe-tiny-chat/mlx-4bit", 0)
	ids := make([]int, 512)
	for i := range ids {
		ids[i] = i + 1
	}
	for _, form := range []struct {
		name string
		min  int
	}{{"sequential", -1}, {"chunked", 8}} {
		b.Run(form.name, func(b *testing.B) {
			be := cpu.New(cpu.Options{DeltaChunkMin: form.min})
			defer be.Close()
			m, err := Open(dir, Options{Backend: be})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, err := m.NewSession()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.ForwardAll(ids); err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
			b.ReportMetric(float64(len(ids)*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
