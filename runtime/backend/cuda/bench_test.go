//go:build linux && cgo

package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
)

// fastQ4 is a random 4-bit weight made quickly enough for lm_head-sized
// benchmarks (random codes, positive bf16 scales, biases ≈ −8·scale).
func fastQ4(rows, cols int, seed uint64) backend.Weight {
	rng := rand.New(rand.NewPCG(seed, 1))
	w := backend.Weight{Rows: rows, Cols: cols, Format: backend.Q4, Group: 64}
	w.Data = make([]byte, rows*cols/2)
	for i := 0; i+8 <= len(w.Data); i += 8 {
		binary.LittleEndian.PutUint64(w.Data[i:], rng.Uint64())
	}
	ng := rows * cols / 64
	w.Scales, w.Biases = make([]byte, 2*ng), make([]byte, 2*ng)
	for g := 0; g < ng; g++ {
		s := 0.01 + 0.05*rng.Float32()
		binary.LittleEndian.PutUint16(w.Scales[2*g:], bf16(s))
		binary.LittleEndian.PutUint16(w.Biases[2*g:], bf16(-8*s))
	}
	return w
}

func bf16(f float32) uint16 {
	b := math.Float32bits(f)
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

func weightBytes(w backend.Weight) int { return len(w.Data) + len(w.Scales) + len(w.Biases) }

// benchMatVec times T=1 matvecs cycling over copies of one weight that
// together exceed the L2 cache (so weights come from HBM, as at run time),
// reporting GB/s of weight bytes by wall clock and by device events.
func benchMatVec(b *testing.B, R, C, copies int) {
	be := newOrSkip(b)
	defer be.Close()
	w := fastQ4(R, C, uint64(R))
	size := weightBytes(w)
	ts := make([]backend.Tensor, copies)
	for i := range ts {
		t, err := be.Register(w)
		if err != nil {
			b.Skipf("register copy %d of %d bytes: %v", i, size, err)
		}
		ts[i] = t
	}
	x, _ := be.Alloc(C)
	xs := make([]float32, C)
	for i := range xs {
		xs[i] = float32(i%7) - 3
	}
	be.Write(x, xs)
	y, _ := be.Alloc(R)
	run := func(n int) error {
		for i := 0; i < n; i++ {
			if err := be.MatMul(y, ts[i%copies], x, 1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := run(copies); err != nil { // warm-up: compile, first touch
		b.Fatal(err)
	}
	be.Sync()
	b.SetBytes(int64(size))
	b.ResetTimer()
	if err := run(b.N); err != nil {
		b.Fatal(err)
	}
	if err := be.Sync(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	n := max(copies, 200)
	d, err := be.gpuTime(func() error { return run(n) })
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(size)*float64(n)/d.Seconds()/1e9, "GB/s-gpu")
	b.ReportMetric(float64(d.Microseconds())/float64(n), "us/op-gpu")
}

// BenchmarkMatVecQ4 is the 397B expert projections: gate/up [1024, 4096]
// and down [4096, 1024], 4-bit group 64 (2.25 MiB each with scales).
func BenchmarkMatVecQ4(b *testing.B) {
	for _, s := range [][2]int{{1024, 4096}, {4096, 1024}} {
		b.Run(fmt.Sprintf("%dx%d", s[0], s[1]), func(b *testing.B) { benchMatVec(b, s[0], s[1], 128) })
	}
}

// BenchmarkMatVecQ4Large is an lm_head-like resident matrix, 4-bit.
func BenchmarkMatVecQ4Large(b *testing.B) {
	for _, R := range []int{248320, 65536} {
		b.Run(fmt.Sprintf("%dx4096", R), func(b *testing.B) { benchMatVec(b, R, 4096, 1) })
	}
}

// BenchmarkMatMulQ4Batch is prefill: T tokens through one expert, in GB/s
// of weight bytes per pass (compute grows with T).
func BenchmarkMatMulQ4Batch(b *testing.B) {
	be := newOrSkip(b)
	defer be.Close()
	w := fastQ4(1024, 4096, 9)
	wt, err := be.Register(w)
	if err != nil {
		b.Fatal(err)
	}
	for _, T := range []int{4, 16, 64} {
		b.Run(fmt.Sprintf("T%d", T), func(b *testing.B) {
			x, _ := be.Alloc(T * 4096)
			y, _ := be.Alloc(T * 1024)
			d, err := be.gpuTime(func() error {
				for i := 0; i < 100; i++ {
					if err := be.MatMul(y, wt, x, T); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < b.N; i++ {
				be.MatMul(y, wt, x, T)
			}
			be.Sync()
			b.ReportMetric(float64(d.Microseconds())/100, "us/op-gpu")
			b.ReportMetric(2*float64(T)*1024*4096/(d.Seconds()/100)/1e12, "TFLOP/s")
		})
	}
}

// BenchmarkCopyDtoD is the device bandwidth yardstick: a 256 MiB
// device-to-device copy. SetBytes counts the bytes read; GB/s-rw counts
// read plus write.
func BenchmarkCopyDtoD(b *testing.B) {
	be := newOrSkip(b)
	defer be.Close()
	const n = 256 << 20
	src, err := be.Alloc(n / 4)
	if err != nil {
		b.Skip(err)
	}
	dst, err := be.Alloc(n / 4)
	if err != nil {
		b.Skip(err)
	}
	s, d := src.(*buf), dst.(*buf)
	be.copyDtoD(d.ptr, s.ptr, n)
	be.Sync()
	b.SetBytes(n)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := be.copyDtoD(d.ptr, s.ptr, n); err != nil {
			b.Fatal(err)
		}
	}
	be.Sync()
	b.StopTimer()
	t, err := be.gpuTime(func() error {
		for i := 0; i < 20; i++ {
			if err := be.copyDtoD(d.ptr, s.ptr, n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(2*float64(n)*20/t.Seconds()/1e9, "GB/s-rw-gpu")
}

// expertBytes is one 397B routed expert: gate, up and down projections,
// 4-bit group 64, with scales and biases.
const expertBytes = 7077888

// BenchmarkH2D is host-to-device bandwidth for one expert's bytes: a raw
// copy from pinned memory, and Bind of the three projections from pinned
// (one DMA each) and from pageable memory (through the staging ring).
func BenchmarkH2D(b *testing.B) {
	be := newOrSkip(b)
	defer be.Close()
	host, err := be.HostAlloc(expertBytes)
	if err != nil {
		b.Fatal(err)
	}
	for i := range host {
		host[i] = byte(i * 7)
	}
	dev, _ := be.Alloc(expertBytes / 4)
	b.Run("raw-pinned", func(b *testing.B) {
		b.SetBytes(expertBytes)
		for i := 0; i < b.N; i++ {
			if err := be.copyHtoD(dev.(*buf).ptr, host); err != nil {
				b.Fatal(err)
			}
		}
	})
	projs := func(h []byte) []backend.Weight {
		var ws []backend.Weight
		for p := 0; p < 3; p++ {
			R, C := 1024, 4096
			if p == 2 {
				R, C = 4096, 1024
			}
			w := fastQ4(R, C, uint64(p))
			sz := weightBytes(w)
			part := h[p*sz : (p+1)*sz]
			n, s := copy(part, w.Data), len(w.Scales)
			copy(part[n:], w.Scales)
			copy(part[n+s:], w.Biases)
			w.Data, w.Scales, w.Biases = part[:n], part[n:n+s], part[n+s:n+2*s]
			ws = append(ws, w)
		}
		return ws
	}
	pageable := make([]byte, expertBytes)
	for name, h := range map[string][]byte{"bind-pinned": host, "bind-pageable": pageable} {
		ws := projs(h)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(expertBytes)
			for i := 0; i < b.N; i++ {
				for _, w := range ws {
					t, err := be.Bind(w)
					if err != nil {
						b.Fatal(err)
					}
					be.Release(t)
				}
				be.Sync()
			}
		})
	}
}

// BenchmarkExpertPipeline runs the routed-expert step per expert: Bind its
// three projections from pinned memory, gate and up matvecs, SwiGLU, down,
// Release. "serial" waits for each expert's copy before its compute is
// queued and for the compute before the next copy; "overlap" lets the copy
// of expert e+1 run under the compute of expert e.
func BenchmarkExpertPipeline(b *testing.B) {
	be := newOrSkip(b)
	defer be.Close()
	const nexp = 8
	host, err := be.HostAlloc(nexp * expertBytes)
	if err != nil {
		b.Fatal(err)
	}
	var experts [nexp][3]backend.Weight
	for e := 0; e < nexp; e++ {
		off := e * expertBytes
		for p := 0; p < 3; p++ {
			R, C := 1024, 4096
			if p == 2 {
				R, C = 4096, 1024
			}
			w := fastQ4(R, C, uint64(e*3+p))
			sz := weightBytes(w)
			part := host[off : off+sz]
			off += sz
			n, s := copy(part, w.Data), len(w.Scales)
			copy(part[n:], w.Scales)
			copy(part[n+s:], w.Biases)
			w.Data, w.Scales, w.Biases = part[:n], part[n:n+s], part[n+s:n+2*s]
			experts[e][p] = w
		}
	}
	x, _ := be.Alloc(4096)
	g, _ := be.Alloc(1024)
	u, _ := be.Alloc(1024)
	y, _ := be.Alloc(4096)
	step := func(e int, serial bool) error {
		var ts [3]backend.Tensor
		for p := range ts {
			t, err := be.Bind(experts[e][p])
			if err != nil {
				return err
			}
			ts[p] = t
		}
		if serial {
			if err := be.Sync(); err != nil {
				return err
			}
		}
		be.MatMul(g, ts[0], x, 1)
		be.MatMul(u, ts[1], x, 1)
		be.SwiGLU(g, g, u)
		be.MatMul(y, ts[2], g, 1)
		for _, t := range ts {
			if err := be.Release(t); err != nil {
				return err
			}
		}
		if serial {
			return be.Sync()
		}
		return nil
	}
	for _, mode := range []string{"serial", "overlap"} {
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(expertBytes)
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if err := step(i%nexp, mode == "serial"); err != nil {
					b.Fatal(err)
				}
			}
			be.Sync()
			b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "us/expert")
		})
	}
}

// BenchmarkLaunch is the host cost of one op (a one-element Add): the
// floor under any single small kernel, such as an expert's matvec.
func BenchmarkLaunch(b *testing.B) {
	be := newOrSkip(b)
	defer be.Close()
	x, _ := be.Alloc(1)
	y, _ := be.Alloc(1)
	be.Add(y, x)
	be.Sync()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := be.Add(y, x); err != nil {
			b.Fatal(err)
		}
	}
	be.Sync()
}
