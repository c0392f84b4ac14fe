package model

import (
	"errors"
	"fmt"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Snapshot is a copy of a session's state at one position: the KV cache
// rows [0, pos) of every full-attention layer and the conv and recurrent
// states of every GatedDeltaNet layer. The DeltaNet states cannot be
// rewound, so a snapshot is the only way back to an earlier position
// short of recomputing from the start.
//
// It lives in host memory (Go-managed, read back with Backend.Read), not
// in backend buffers: a GPU backend's device memory is the scarcer, and
// its buffers are only freed when the garbage collector notices their
// small handles. The cost, in float32, is the DeltaNet state, fixed per
// model: linear layers × ((conv kernel−1)·convDim + Hv·Dk·Dv) × 4 bytes,
// plus the KV rows, per token: full layers × 2·kvHeads·headDim × 4 bytes.
// For Qwen3.5-397B (45 DeltaNet layers of 64×128×128 states, 15 attention
// layers) that is about 190 MB plus 120·kvHeads·headDim bytes per token;
// Bytes says exactly. Taking or restoring one is a copy of that size
// between backend and host.
type Snapshot struct {
	m      *Model
	pos    int
	layers []snapLayer
}

type snapLayer struct {
	k, v    []float32 // full attention: KV rows [0, pos)
	conv, s []float32 // GatedDeltaNet
}

// Pos is the number of tokens the snapshot holds.
func (sn *Snapshot) Pos() int { return sn.pos }

// Bytes is the host memory the snapshot's state takes.
func (sn *Snapshot) Bytes() int64 {
	var n int64
	for _, l := range sn.layers {
		n += int64(len(l.k)+len(l.v)+len(l.conv)+len(l.s)) * 4
	}
	return n
}

// Snapshot copies the session's state to host memory.
func (s *Session) Snapshot() (*Snapshot, error) { return s.SnapshotReuse(nil) }

// SnapshotReuse is Snapshot into old's memory where it is large enough,
// to spare a server the garbage of one snapshot per request. old (nil for
// a fresh one) must not be used afterwards, even on error: its contents
// may be partly overwritten.
func (s *Session) SnapshotReuse(old *Snapshot) (*Snapshot, error) {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errClosed
	}
	sn := old
	if sn == nil || len(sn.layers) != len(s.layers) {
		sn = &Snapshot{layers: make([]snapLayer, len(s.layers))}
	}
	sn.m, sn.pos = m, s.pos
	read := func(dst *[]float32, src backend.Buffer, n int) error {
		if cap(*dst) < n {
			*dst = make([]float32, n)
		}
		*dst = (*dst)[:n]
		if n == 0 {
			return nil
		}
		return m.be.Read(*dst, src)
	}
	for l := range s.layers {
		st, sl := &s.layers[l], &sn.layers[l]
		var err error
		if m.layers[l].full {
			nk, nv := 0, 0
			if st.cap > 0 {
				nk, nv = s.pos*st.kw, s.pos*st.vw
			}
			err = errors.Join(read(&sl.k, st.k, nk), read(&sl.v, st.v, nv))
		} else {
			err = errors.Join(read(&sl.conv, st.conv, st.conv.Len()), read(&sl.s, st.s, st.s.Len()))
		}
		if err != nil {
			return nil, fmt.Errorf("model: snapshot of layer %d: %w", l, err)
		}
	}
	return sn, nil
}

// Restore puts the session back to the state sn holds, whatever its state
// now (a session a failed or cancelled Forward left needing Reset
// included). sn must come from a session of the same model and stays
// valid: one snapshot may be restored any number of times.
func (s *Session) Restore(sn *Snapshot) error {
	m := s.m
	if sn == nil || sn.m != m {
		return errors.New("model: restore of a snapshot of another model")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	// Until every layer is written the session is neither state.
	s.pos = 0
	for l := range s.layers {
		st, sl := &s.layers[l], &sn.layers[l]
		var err error
		if m.layers[l].full {
			if len(sl.k) > 0 {
				err = s.growKV(st, sn.pos)
				if err == nil {
					err = errors.Join(m.be.Write(st.k, sl.k), m.be.Write(st.v, sl.v))
				}
			}
		} else {
			err = errors.Join(m.be.Write(st.conv, sl.conv), m.be.Write(st.s, sl.s))
		}
		if err != nil {
			s.broken = err
			return fmt.Errorf("model: restore of layer %d: %w", l, err)
		}
	}
	s.pos, s.broken = sn.pos, nil
	return nil
}
