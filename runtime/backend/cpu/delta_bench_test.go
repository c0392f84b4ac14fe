package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// BenchmarkDeltaNet times one prompt's GatedDeltaNet op (one layer) at the
// built-in model's shape and at the 397B one (pack.Presets: 16 key heads,
// 64 value heads, head dims 128), sequential against chunked, on the
// backend's default threads. tok/s is prompt tokens per wall second.
func BenchmarkDeltaNet(b *testing.B) {
	for _, sh := range []struct {
		name string
		s    backend.DeltaShape
	}{
		{"tiny", backend.DeltaShape{Hk: 2, Dk: 64, Hv: 4, Dv: 64, Eps: 1e-6}},
		{"397b", backend.DeltaShape{Hk: 16, Dk: 128, Hv: 64, Dv: 128, Eps: 1e-6}},
	} {
		for _, T := range []int{1, 8, 16, 80, 512} {
			for _, form := range []struct {
				name string
				min  int
				path Path
			}{{"sequential", -1, PathAuto}, {"sequential-go", -1, PathGo}, {"chunked", 2, PathAuto}} {
				if form.path == PathGo && T > 80 {
					continue // minutes per run at 512 tokens (docs/benchmarks.md has one)
				}
				b.Run(fmt.Sprintf("%s/T=%d/%s", sh.name, T, form.name), func(b *testing.B) {
					benchDelta(b, sh.s, T, Options{DeltaChunkMin: form.min, Path: form.path})
				})
			}
		}
	}
}

func benchDelta(b *testing.B, s backend.DeltaShape, T int, opts Options) {
	be := New(opts)
	defer be.Close()
	s.T = T
	rng := rand.New(rand.NewPCG(3, 4))
	vec := func(n int, scale float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = (rng.Float32()*2 - 1) * scale
		}
		return v
	}
	put := func(v []float32) backend.Buffer {
		buf, err := be.Alloc(len(v))
		if err != nil {
			b.Fatal(err)
		}
		if err := be.Write(buf, v); err != nil {
			b.Fatal(err)
		}
		return buf
	}
	qkv, a, bb := put(vec(T*s.QKVLen(), 1)), put(vec(T*s.Hv, 1)), put(vec(T*s.Hv, 1))
	al, err := be.Register(backendtest.DenseF32(1, s.Hv, vec(s.Hv, 1)))
	if err != nil {
		b.Fatal(err)
	}
	dt, err := be.Register(backendtest.DenseF32(1, s.Hv, vec(s.Hv, 0.5)))
	if err != nil {
		b.Fatal(err)
	}
	y, _ := be.Alloc(T * s.Hv * s.Dv)
	state, _ := be.Alloc(s.StateLen())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := be.DeltaNet(y, qkv, a, bb, al, dt, state, s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(T*b.N)/b.Elapsed().Seconds(), "tok/s")
}
