//go:build linux && cgo

package cuda

import (
	"fmt"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
)

// BenchmarkMatMulPrefill measures the crossover between the CUDA-core
// kernel (matvec.h, "cores") and the tensor-core kernel (mma_cuda.h,
// "mma"): T tokens through the 397B's expert projections (gate/up [1024,
// 4096], down [4096, 1024], 4-bit group 64) and a mixer-sized [8192,
// 4096] one, cycling over copies of the weight that together exceed the
// L2 cache, as at run time. Device time per op by CUDA events, and
// TFLOP/s of the useful 2·T·R·C (the tensor cores do three MMAs for it).
func BenchmarkMatMulPrefill(b *testing.B) {
	for _, s := range [][3]int{{1024, 4096, 32}, {4096, 1024, 32}, {8192, 4096, 4}} {
		R, C, copies := s[0], s[1], s[2]
		for _, path := range []string{"cores", "mma"} {
			min := -1
			if path == "mma" {
				min = 1
			}
			b.Run(fmt.Sprintf("%dx%d/%s", R, C, path), func(b *testing.B) {
				be := newMMA(b, min)
				defer be.Close()
				w := fastQ4(R, C, uint64(R))
				ts := make([]backend.Tensor, copies)
				for i := range ts {
					t, err := be.Register(w)
					if err != nil {
						b.Fatal(err)
					}
					ts[i] = t
				}
				for _, T := range []int{1, 2, 4, 8, 16, 32, 64, 128, 256, 1024} {
					x, _ := be.Alloc(T * C)
					y, _ := be.Alloc(T * R)
					xs := make([]float32, T*C)
					for i := range xs {
						xs[i] = float32(i%7) - 3
					}
					be.Write(x, xs)
					n := max(copies, 64)
					run := func() error {
						for i := 0; i < n; i++ {
							if err := be.MatMul(y, ts[i%copies], x, T); err != nil {
								return err
							}
						}
						return nil
					}
					if err := run(); err != nil {
						b.Fatal(err)
					}
					d, err := be.gpuTime(run)
					if err != nil {
						b.Fatal(err)
					}
					us := float64(d.Microseconds()) / float64(n)
					b.ReportMetric(us, fmt.Sprintf("us/op-T%d", T))
					if T >= 64 {
						b.ReportMetric(2*float64(T*R*C)/(us*1e-6)/1e12, fmt.Sprintf("TFLOP/s-T%d", T))
					}
					be.Free(x)
					be.Free(y)
				}
			})
		}
	}
}
