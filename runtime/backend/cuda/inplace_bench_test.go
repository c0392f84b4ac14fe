//go:build linux && cgo

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// BenchmarkMatVecInPlace: a layer's K experts' gate projections (397B
// shapes, Q4, 1024 × 4096) as one batched matvec reading the weights in
// place from pinned host memory over PCIe, against the same batch from
// device memory and against copying the same bytes over the link: whether
// a miss could be computed where it lies in the host tier, with no copy
// and no host step (docs/gpu-decode.md, "Session 15", (3)). GB/s of weight
// bytes, device time by events, best of three. In-place results are checked
// bit for bit against the device-memory ones.
func BenchmarkMatVecInPlace(b *testing.B) {
	be := newOrSkip(b)
	defer be.Close()
	const R, C, G = 1024, 4096, 64
	rng := rand.New(rand.NewPCG(4, 4))
	x := make([]float32, C)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	xb, _ := be.Alloc(C)
	if err := be.Write(xb, x); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		for _, K := range []int{1, 4, 10} {
			ws := make([]backend.Weight, K)
			for i := range ws {
				ws[i], _ = backendtest.RandomWeight(rng, backend.Q4, R, C, G)
			}
			_, _, one := layout(ws[0])
			pinned, err := be.HostAlloc(K * one)
			if err != nil {
				b.Fatal(err)
			}
			dev := make([]backend.Tensor, K)
			host := make([]backend.Tensor, K)
			ys := make([]backend.Buffer, K)
			xs := make([]backend.Buffer, K)
			bytes := 0
			for i, w := range ws {
				hw := placeExpert(pinned[i*one:], []backend.Weight{w}, 0)[0]
				host[i] = be.hostTensor(hw)
				if dev[i], err = be.Register(w); err != nil {
					b.Fatal(err)
				}
				ys[i], _ = be.Alloc(R)
				xs[i] = xb
				bytes += len(w.Data) + len(w.Scales) + len(w.Biases)
			}
			rate := func(ts []backend.Tensor) float64 {
				best := 1e9
				for r := 0; r < 3; r++ {
					d, err := be.gpuTime(func() error { return be.MatVecBatch(ys, ts, xs) })
					if err != nil {
						b.Fatal(err)
					}
					best = min(best, d.Seconds())
				}
				return float64(bytes) / best / 1e9
			}
			read := func() [][]float32 {
				out := make([][]float32, K)
				for i := range ys {
					out[i] = make([]float32, R)
					if err := be.Read(out[i], ys[i]); err != nil {
						b.Fatal(err)
					}
				}
				return out
			}
			dgb := rate(dev)
			want := read()
			hgb := rate(host)
			for i, got := range read() {
				if relErr(got, want[i]) != 0 {
					b.Fatalf("K=%d job %d: the in-place result differs from the device-memory one", K, i)
				}
			}
			scratch, err := be.devAlloc(K * one)
			if err != nil {
				b.Fatal(err)
			}
			best := time.Duration(math.MaxInt64)
			for r := 0; r < 3; r++ {
				t0 := time.Now()
				if err := be.copyHtoD(scratch, pinned); err != nil {
					b.Fatal(err)
				}
				best = min(best, time.Since(t0))
			}
			cgb := float64(K*one) / best.Seconds() / 1e9
			fmt.Printf("inplace K=%-2d  device memory %7.1f GB/s  in place from host %6.1f GB/s  copy over the link %6.1f GB/s (host clock)\n", K, dgb, hgb, cgb)
			if err := be.devFree(scratch); err != nil {
				b.Fatal(err)
			}
			if err := be.HostFree(pinned); err != nil {
				b.Fatal(err)
			}
		}
	}
}
