package model

import (
	"hash/crc32"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// lateBinds records, for each bound tensor, the bytes it was bound from
// and when: Release then checks that those bytes are unchanged (the stream
// has not handed the buffer to another read while the tensor was bound,
// as a device's copy from pinned memory may still be reading it) and
// counts the releases that came after the next expert's binds.
type lateBinds struct {
	backend.Backend
	binds, late int
	bound       map[backend.Tensor]lateRec
	t           *testing.T
}

type lateRec struct {
	data []byte
	sum  uint32
	seq  int
}

func (b *lateBinds) Bind(w backend.Weight) (backend.Tensor, error) {
	t, err := b.Backend.Bind(w)
	if err == nil {
		b.bound[t] = lateRec{data: w.Data, sum: crc32.ChecksumIEEE(w.Data), seq: b.binds}
		b.binds++
	}
	return t, err
}

func (b *lateBinds) Release(t backend.Tensor) error {
	if rec, ok := b.bound[t]; ok {
		delete(b.bound, t)
		if crc32.ChecksumIEEE(rec.data) != rec.sum {
			b.t.Errorf("bind %d: its bytes changed before its release: the stream reused the buffer", rec.seq)
		}
		if b.binds >= rec.seq-rec.seq%3+6 {
			b.late++ // the next expert's three binds came first
		}
	}
	return b.Backend.Release(t)
}

// TestLateRelease: with no tier, every expert of a prompt is a miss read
// into the stream's few buffers; each miss's tensors are released only
// after the next miss's binds (computeHeld), and no buffer is read into
// again while a tensor bound from it is held. The goldens hold.
func TestLateRelease(t *testing.T) {
	g := readGolden(t, "bf16")
	be := &lateBinds{Backend: cpu.New(cpu.Options{Threads: 2}), bound: map[backend.Tensor]lateRec{}, t: t}
	defer be.Close()
	// One reader: two buffers, so a buffer given back early is read into
	// while the consumer still holds the expert before it.
	m := open(t, "hf", 16, 0, Options{Backend: be, ReadParallel: 1})
	checkHiddenAndLogits(t, m, g)
	misses := int(m.ExpertStats().Uses)
	if len(be.bound) != 0 {
		t.Errorf("%d tensors still bound after the step", len(be.bound))
	}
	// Every miss but the last of each layer's stream is released late.
	if want := 3 * (misses - m.Config.NumHiddenLayers); be.late < want || want <= 0 {
		t.Errorf("%d of %d binds released after the next expert's binds, want at least %d", be.late, be.binds, want)
	}
}
