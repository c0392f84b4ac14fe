//go:build linux && cgo

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"testing"
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// newOrSkip opens the CUDA backend, or skips where there is no driver,
// device or NVRTC (as on CI); FMOE_CUDA_REQUIRE=1 turns the skip into a
// failure, for runs on a GPU machine.
func newOrSkip(t testing.TB) *Backend {
	t.Helper()
	return newOptsOrSkip(t, Options{})
}

// newOptsOrSkip is newOrSkip with options.
func newOptsOrSkip(t testing.TB, opts Options) *Backend {
	t.Helper()
	be, err := NewWithOptions(opts)
	if err != nil {
		if os.Getenv("FMOE_CUDA_REQUIRE") != "" {
			t.Fatalf("CUDA backend required (FMOE_CUDA_REQUIRE set): %v", err)
		}
		t.Skipf("CUDA backend unavailable, skipping: %v", err)
	}
	return be
}

func TestConformance(t *testing.T) {
	be := newOrSkip(t)
	t.Logf("backend: %s", be.Name())
	be.Close()
	backendtest.Run(t, func() backend.Backend {
		b, err := New()
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// TestUnavailableIsError: without a driver New must fail cleanly, saying why.
func TestUnavailableIsError(t *testing.T) {
	be, err := New()
	if err == nil {
		be.Close()
		t.Skip("a CUDA device is present")
	}
	if be != nil || err.Error() == "" {
		t.Fatalf("New() = %v, %q", be, err)
	}
	t.Logf("New() error: %v", err)
}

// compareCPU runs MatMul on both backends for shapes the conformance suite
// does not reach: the generic kernel (group smaller than a chunk, rows not
// whole 16-byte chunks) and many tokens (4-token passes plus a remainder).
func TestMatMulShapes(t *testing.T) {
	be := newOrSkip(t)
	defer be.Close()
	ref := cpu.New(cpu.Options{Path: cpu.PathReference})
	for _, c := range []struct {
		f       backend.Format
		R, C, G int
		T       int
	}{
		{backend.Q2, 33, 128, 32, 3}, // group 32 < 64-element chunk: generic
		{backend.BF16, 17, 36, 0, 2}, // 72-byte rows: generic
		{backend.F32, 9, 6, 0, 5},    // 24-byte rows: generic
		{backend.F16, 70, 200, 0, 1}, // 400-byte rows: fast
		{backend.Q4, 300, 4096, 64, 11},
		{backend.Q8, 129, 2048, 128, 7},
	} {
		name := fmt.Sprintf("%v/%dx%d/g%d/T%d", c.f, c.R, c.C, c.G, c.T)
		rng := rand.New(rand.NewPCG(uint64(c.R), uint64(c.C)))
		w, _ := backendtest.RandomWeight(rng, c.f, c.R, c.C, c.G)
		x := make([]float32, c.T*c.C)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		got := runMatMul(t, be, w, x, c.T, c.R)
		want := runMatMul(t, ref, w, x, c.T, c.R)
		if e := relErr(got, want); !(e < 2e-5) {
			t.Errorf("%s: relative error %.3g against the CPU reference", name, e)
		}
	}
}

func runMatMul(t *testing.T, be backend.Backend, w backend.Weight, x []float32, T, R int) []float32 {
	t.Helper()
	wt, err := be.Register(w)
	if err != nil {
		t.Fatal(err)
	}
	return runTensor(t, be, wt, x, T, R)
}

func relErr(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(num / den)
}

// TestBindPaths binds experts larger than a staging chunk from pageable
// memory and from HostAlloc memory, reusing slots, and checks each result.
// Pinned parts that lie at the device's offsets (a pack's layout) go in one
// DMA (hostSpan); others, packed tight or apart, one DMA each.
// With huge, HostAlloc maps transparent huge pages and registers them
// (FMOE_CUDA_HOST_HUGE's experiment): the same binds, from 2 MiB-aligned
// memory.
func TestBindPaths(t *testing.T) {
	for _, huge := range []bool{false, true} {
		t.Run(fmt.Sprintf("huge=%v", huge), func(t *testing.T) { bindPaths(t, huge) })
	}
}

func bindPaths(t *testing.T, huge bool) {
	be := newOrSkip(t)
	defer be.Close()
	be.hostHuge = huge
	ref := cpu.New(cpu.Options{})
	rng := rand.New(rand.NewPCG(3, 4))
	pinned, err := be.HostAlloc(8<<20 + 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer be.HostFree(pinned)
	if at := uintptr(unsafe.Pointer(&pinned[0])); huge && at%(2<<20) != 0 || len(pinned) != 8<<20+1000 || !be.isPinned(pinned) {
		t.Fatalf("HostAlloc: %d bytes at %#x (pinned %v): want %d, pinned, on a 2 MiB boundary when huge", len(pinned), at, be.isPinned(pinned), 8<<20+1000)
	}
	for _, c := range []struct {
		R, C, gap int
		span      bool
	}{
		{1024, 4096, 0, true},     // 2 MiB of data: two staging chunks; parts at 256-byte offsets
		{1024, 4096, 4096, false}, // the parts apart
		{1001, 192, 0, false},     // data of 96,096 bytes: scales not at a 256-byte offset
	} {
		x := make([]float32, c.C)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		xb, _ := be.Alloc(c.C)
		if err := be.Write(xb, x); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			w, _ := backendtest.RandomWeight(rng, backend.Q4, c.R, c.C, 64)
			want := runMatMul(t, ref, w, x, 1, c.R)
			if i%2 == 1 {
				// Read into pinned memory, as the runtime's pread would.
				n := copy(pinned, w.Data) + c.gap
				s := copy(pinned[n:], w.Scales) + c.gap
				b := copy(pinned[n+s:], w.Biases)
				w.Data, w.Scales, w.Biases = pinned[:n-c.gap], pinned[n:n+s-c.gap], pinned[n+s:n+s+b]
				so, bo, _ := layout(w)
				if got := hostSpan(w, so, bo) != nil; got != c.span {
					t.Errorf("%dx%d gap %d: one span = %v", c.R, c.C, c.gap, got)
				}
			}
			wt, err := be.Bind(w)
			if err != nil {
				t.Fatal(err)
			}
			if got := wt.(*tensor).direct; got != (i%2 == 1) {
				t.Errorf("%dx%d expert %d: direct = %v", c.R, c.C, i, got)
			}
			yb, _ := be.Alloc(c.R)
			if err := be.MatMul(yb, wt, xb, 1); err != nil {
				t.Fatal(err)
			}
			if err := be.Release(wt); err != nil {
				t.Fatal(err)
			}
			got := make([]float32, c.R)
			if err := be.Read(got, yb); err != nil {
				t.Fatal(err)
			}
			if e := relErr(got, want); !(e < 2e-5) {
				t.Errorf("%dx%d gap %d expert %d: relative error %.3g", c.R, c.C, c.gap, i, e)
			}
		}
	}
}

// TestMemoryPressure holds the backend to 64 MiB and allocates 1 GiB in
// 16 MiB buffers: with the collector off, only Free makes room; with it
// on and no Free, devAlloc's last resort (collect, then retry) must.
func TestMemoryPressure(t *testing.T) {
	be, err := NewWithOptions(Options{MemLimit: 64 << 20})
	if err != nil {
		newOrSkip(t).Close()
		t.Fatal(err)
	}
	defer be.Close()
	const n = 4 << 20 // 16 MiB of float32
	t.Run("Free", func(t *testing.T) {
		defer debug.SetGCPercent(debug.SetGCPercent(-1))
		for i := 0; i < 64; i++ {
			b, err := be.Alloc(n)
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
			if err := be.Free(b); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("Collect", func(t *testing.T) {
		for i := 0; i < 64; i++ {
			if _, err := be.Alloc(n); err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
	})
	if _, err := be.Alloc(32 << 20); err == nil {
		t.Fatal("a 128 MiB buffer fit a 64 MiB limit")
	}
}

// TestHostSpan: one span only when the scales and biases start where the
// device layout puts them past the data, in one buffer (no GPU needed).
func TestHostSpan(t *testing.T) {
	buf := make([]byte, 1<<16)
	w := backend.Weight{Format: backend.Q4, Rows: 64, Cols: 128, Group: 64}
	nd, ns := 64*128/2, 64*2*2
	so, bo, _ := layoutLens(nd, ns, ns)
	for _, c := range []struct {
		s, b int
		want bool
	}{{so, bo, true}, {nd, nd + ns, so == nd && bo == nd+ns}, {so + 256, bo + 256, false}, {so, bo + 4, false}} {
		w.Data, w.Scales, w.Biases = buf[:nd], buf[c.s:c.s+ns], buf[c.b:c.b+ns]
		span := hostSpan(w, so, bo)
		if (span != nil) != c.want || span != nil && (&span[0] != &buf[0] || len(span) != bo+ns) {
			t.Errorf("scales at %d, biases at %d: span of %d bytes, want one: %v", c.s, c.b, len(span), c.want)
		}
	}
	w.Scales, w.Biases = nil, nil
	if hostSpan(w, so, bo) != nil {
		t.Error("a weight without scales has a span")
	}
}

// TestReadStaged: reads from the size where Read goes through pinned
// chunks, over one, several and a part chunk, from a view's offset,
// return every value written (bit for bit), and a small read after them
// too.
func TestReadStaged(t *testing.T) {
	be := newOrSkip(t)
	defer be.Close()
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{readStagedMin / 4, stageChunk/4 + 13, 3*stageChunk/4 + 5, 2 * stageChunk / 4} {
		buf, err := be.Alloc(n + 7)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, n+7)
		for i := range want {
			want[i] = float32(rng.NormFloat64())
		}
		if err := be.Write(buf, want); err != nil {
			t.Fatal(err)
		}
		v, err := be.View(buf, 7, n)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]float32, n)
		if err := be.Read(got, v); err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if got[i] != want[7+i] {
				t.Fatalf("%d floats: value %d is %v, wrote %v", n, i, got[i], want[7+i])
			}
		}
		small := make([]float32, 3)
		if err := be.Read(small, buf); err != nil || small[2] != want[2] {
			t.Fatalf("a small read after a staged one: %v, %v", small, err)
		}
		be.Free(buf)
	}
}

// TestReadPaths: small reads (Read up to MaxAsyncRead values, ReadAsync)
// by DMA, and written by read_mapped into pinned memory with
// FMOE_CUDA_READ=mapped, return every word written bit for bit (NaN payloads
// and negative zero included), from a view's offset, with a Read between
// an async read and its wait; one past MaxAsyncRead takes the plain copy.
func TestReadPaths(t *testing.T) {
	for _, mode := range []string{"", "mapped"} {
		t.Run("read="+mode, func(t *testing.T) {
			t.Setenv("FMOE_CUDA_READ", mode)
			be := newOrSkip(t)
			defer be.Close()
			if be.readMapped != (mode == "mapped") {
				t.Fatalf("FMOE_CUDA_READ=%q: readMapped %v", mode, be.readMapped)
			}
			n := backend.MaxAsyncRead + 1
			want := make([]float32, n+5)
			rng := rand.New(rand.NewPCG(9, uint64(len(mode))))
			for i := range want {
				want[i] = math.Float32frombits(rng.Uint32())
			}
			want[5] = math.Float32frombits(0x7fa00001) // a signalling NaN's payload
			want[6] = float32(math.Copysign(0, -1))
			buf, err := be.Alloc(len(want))
			if err != nil {
				t.Fatal(err)
			}
			if err := be.Write(buf, want); err != nil {
				t.Fatal(err)
			}
			same := func(what string, got []float32, at int) {
				t.Helper()
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[at+i]) {
						t.Fatalf("%s of %d: word %d is %#x, wrote %#x", what, len(got), i, math.Float32bits(got[i]), math.Float32bits(want[at+i]))
					}
				}
			}
			for _, k := range []int{1, 31, 257, backend.MaxAsyncRead, n} {
				v, err := be.View(buf, 5, k)
				if err != nil {
					t.Fatal(err)
				}
				got := make([]float32, k)
				if err := be.Read(got, v); err != nil {
					t.Fatal(err)
				}
				same("Read", got, 5)
				if k > backend.MaxAsyncRead {
					continue
				}
				async := make([]float32, k)
				wait, err := be.ReadAsync(async, v)
				if err != nil {
					t.Fatal(err)
				}
				mid := make([]float32, 3)
				if err := be.Read(mid, buf); err != nil {
					t.Fatal(err)
				}
				same("Read during ReadAsync", mid, 0)
				if err := wait(); err != nil {
					t.Fatal(err)
				}
				same("ReadAsync", async, 5)
			}
		})
	}
}

// TestConformanceUploadMapped runs the suite with the host's small uploads
// through the pinned ring and write_mapped (FMOE_CUDA_UPLOAD=mapped).
func TestConformanceUploadMapped(t *testing.T) {
	t.Setenv("FMOE_CUDA_UPLOAD", "mapped")
	be := newOrSkip(t)
	be.Close()
	backendtest.Run(t, func() backend.Backend {
		b, err := New()
		if err != nil {
			t.Fatal(err)
		}
		if !b.upMapped {
			t.Fatal("FMOE_CUDA_UPLOAD=mapped: upMapped false")
		}
		return b
	})
}

// TestUploadRing: small Writes through the mapped ring, many times its
// size, each followed on the stream by a copy of what it wrote, give back
// every word written, odd lengths and a Write too large for a chunk
// included: a chunk is reused only after the kernels that read it ran.
func TestUploadRing(t *testing.T) {
	t.Setenv("FMOE_CUDA_UPLOAD", "mapped")
	be := newOrSkip(t)
	defer be.Close()
	rng := rand.New(rand.NewPCG(11, 12))
	const rounds = 300
	in, err := be.Alloc(upChunk/4 + 1)
	if err != nil {
		t.Fatal(err)
	}
	outs := make([]backend.Buffer, rounds)
	want := make([][]float32, rounds)
	for i := range rounds {
		n := 1 + rng.IntN(1500)
		if i == rounds/2 {
			n = upChunk/4 + 1 // past a chunk: by DMA
		}
		want[i] = make([]float32, n)
		for j := range want[i] {
			want[i][j] = math.Float32frombits(rng.Uint32())
		}
		v, err := be.View(in, 0, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := be.Write(v, want[i]); err != nil {
			t.Fatal(err)
		}
		if outs[i], err = be.Alloc(n); err != nil {
			t.Fatal(err)
		}
		if err := be.Copy(outs[i], v); err != nil {
			t.Fatal(err)
		}
	}
	if len(be.up.st) != upSlots {
		t.Errorf("%d rounds used %d chunks of the ring, want all %d", rounds, len(be.up.st), upSlots)
	}
	for i, o := range outs {
		got := make([]float32, len(want[i]))
		if err := be.Read(got, o); err != nil {
			t.Fatal(err)
		}
		for j := range got {
			if math.Float32bits(got[j]) != math.Float32bits(want[i][j]) {
				t.Fatalf("write %d of %d words: word %d is %#x, wrote %#x", i, len(got), j, math.Float32bits(got[j]), math.Float32bits(want[i][j]))
			}
		}
	}
}
