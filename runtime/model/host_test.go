package model

import (
	"errors"
	"testing"
	"unsafe"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
	"github.com/fmoe/fmoe/runtime/backend/cuda"
	"github.com/fmoe/fmoe/runtime/backend/metal"
)

// The GPU backends are the reason for the optional interfaces: keep them
// implementing them.
var (
	_ backend.HostAllocator = (*cuda.Backend)(nil)
	_ backend.HostAllocator = (*metal.Backend)(nil)
	_ backend.HostMapper    = (*metal.Backend)(nil)
)

// hostBE is the CPU backend with HostAlloc/HostFree/MapHost that record
// their calls, and a Bind that checks where the expert bytes live.
type hostBE struct {
	backend.Backend
	misalign bool // HostAlloc returns memory 1 byte past a page
	failMap  bool // MapHost fails, as Metal's does past maxBufferLength
	failFrom int  // HostAlloc fails from this call on (0: never)

	live          map[uintptr]int // HostAlloc'd and not freed: start → length
	allocs, frees int
	mapped        int
	binds, inHost int
	badFree       error
}

func newHostBE() *hostBE {
	return &hostBE{Backend: cpu.New(cpu.Options{}), live: map[uintptr]int{}}
}

func (b *hostBE) HostAlloc(n int) ([]byte, error) {
	if b.failFrom > 0 && b.allocs+1 >= b.failFrom {
		return nil, errors.New("out of pinned memory")
	}
	buf := alignedBuf(n + 1)
	if b.misalign {
		buf = buf[1:]
	}
	buf = buf[:n:n]
	b.live[uintptr(unsafe.Pointer(&buf[0]))] = n
	b.allocs++
	return buf, nil
}

func (b *hostBE) HostFree(buf []byte) error {
	p := uintptr(unsafe.Pointer(&buf[0]))
	if b.live[p] != len(buf) {
		b.badFree = errors.New("HostFree of a slice HostAlloc did not return")
		return b.badFree
	}
	delete(b.live, p)
	b.frees++
	return nil
}

func (b *hostBE) MapHost(m []byte) error {
	b.mapped++
	if b.failMap {
		return errors.New("longer than maxBufferLength")
	}
	return nil
}

func (b *hostBE) Bind(w backend.Weight) (backend.Tensor, error) {
	b.binds++
	p := uintptr(unsafe.Pointer(&w.Data[0]))
	for s, n := range b.live {
		if p >= s && p+uintptr(len(w.Data)) <= s+uintptr(n) {
			b.inHost++
			break
		}
	}
	return b.Backend.Bind(w)
}

// TestHostAllocatedBuffers: with a backend that allocates host memory, the
// experts are read into it (aligned for direct I/O even when the backend's
// memory is not), it is all freed at Close, MapHost sees the weights, and
// the logits are bit-identical to the plain CPU backend's.
func TestHostAllocatedBuffers(t *testing.T) {
	dir := packed(t, "mlx-4bit", 0)
	want := forwardAll(t, open(t, "mlx-4bit", 0, 0, Options{}), timingPrompt)
	for _, c := range []struct {
		name              string
		misalign, failMap bool
		failFrom          int
	}{{"aligned", false, false, 0}, {"misaligned", true, false, 0}, {"map-fails", false, true, 0}, {"alloc-fails", false, false, 3}} {
		t.Run(c.name, func(t *testing.T) {
			be := newHostBE()
			be.misalign, be.failMap, be.failFrom = c.misalign, c.failMap, c.failFrom
			m, err := Open(dir, Options{Backend: be})
			if err != nil {
				t.Fatal(err)
			}
			if c.failFrom > 0 {
				// Go memory instead, and nothing of the backend's kept.
				got := forwardAll(t, m, timingPrompt)
				if len(be.live) != 0 || be.frees != 2 || be.inHost != 0 || got[0] != want[0] {
					t.Errorf("after a failed HostAlloc: %d live, %d freed, %d binds from it", len(be.live), be.frees, be.inHost)
				}
				m.Close()
				return
			}
			if len(be.live) != 2*m.K || be.mapped != 1 || m.hostMapped == c.failMap {
				t.Errorf("%d HostAlloc buffers for K=%d, %d MapHosts, mapped %v", len(be.live), m.K, be.mapped, m.hostMapped)
			}
			for range 2 * m.K {
				b := <-m.experts.pool
				if b == nil || !aligned(b) || len(b) != int(m.experts.set.Stride) {
					t.Fatalf("pool buffer of %d bytes, aligned %v", len(b), b != nil && aligned(b))
				}
				m.experts.pool <- b
			}
			got := forwardAll(t, m, timingPrompt)
			if be.binds == 0 || be.inHost != be.binds {
				t.Errorf("%d of %d binds from HostAlloc memory", be.inHost, be.binds)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("logit %d: %v, want %v", i, got[i], want[i])
				}
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if be.frees != be.allocs || len(be.live) != 0 || be.badFree != nil {
				t.Errorf("%d of %d HostAllocs freed (%v)", be.frees, be.allocs, be.badFree)
			}
			be.Close()
		})
	}
}

func forwardAll(t *testing.T, m *Model, ids []int) []float32 {
	t.Helper()
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	lg, err := s.ForwardAll(ids)
	if err != nil {
		t.Fatal(err)
	}
	return lg
}
