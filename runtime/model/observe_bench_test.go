package model

import (
	"testing"
)

// BenchmarkDecodeWatched times decode steps with nothing watching (as
// fmoe-run serve runs while no GET /v1/fmoe/stats stream is open) and with
// an observer set (while one is): the first must cost what a build
// without the hook costs, the second shows what watching costs.
func BenchmarkDecodeWatched(b *testing.B) {
	dir := benchModelDir(b)
	for _, watched := range []bool{false, true} {
		name := "unwatched"
		if watched {
			name = "watched"
		}
		b.Run(name, func(b *testing.B) {
			m, err := Open(dir, Options{})
			if err != nil {
				b.Skip(err)
			}
			defer m.Close()
			s, err := m.NewSession()
			if err != nil {
				b.Fatal(err)
			}
			V := m.Config.VocabSize
			if _, err := s.Forward([]int{1 % V, 2 % V, 3 % V, 4 % V}); err != nil {
				b.Fatal(err)
			}
			if watched {
				steps := 0
				m.Observe(func(st *StepStats) { steps += len(st.Layers) })
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if s.Pos() >= m.maxCtx-1 {
					s.Reset()
				}
				if _, err := s.Forward([]int{(i*7919 + 5) % V}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// BenchmarkObserveHookOff is what the hook adds to one decode step of the
// built-in model when no observer is set: the calls step makes, without the
// step.
func BenchmarkObserveHookOff(b *testing.B) {
	m, err := Open(packed(b, "mlx-4bit", 0), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	s, err := m.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.observeStart(1, true)
		for l := range m.layers {
			s.observeLayer(l)
		}
		s.observeDone()
		s.observeEnd()
	}
}
