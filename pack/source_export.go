package pack

import (
	"fmt"
	"sync"

	"github.com/fmoe/fmoe/format"
)

// SourceCheckpoint is a read-only view of a source checkpoint under canonical tensor names, for
// checkers (fmoe-verify --source) that compare a pack with what it was made from. It resolves
// names and expert layouts exactly as Convert does, so a checker cannot drift from the packer.
type SourceCheckpoint struct {
	ck *checkpoint
	p  *packer

	mu     sync.Mutex
	layers map[int]*layerExperts
}

// SourceTensor is one tensor as the checkpoint stores it. Data is a read-only view into the
// mapped shard: valid until Close, never to be written.
type SourceTensor struct {
	Name  string // the name in the checkpoint (not canonical), for messages
	DType string
	Shape []int
	Data  []byte
}

// SourceExpert is one expert projection as the checkpoint stores it: a float [rows, cols]
// matrix (DType BF16, F16 or F32; Scales and Biases nil), or an MLX affine-quantised one (DType
// U32 with Bits, Group, Scales and Biases). The slices are read-only views valid until Close.
type SourceExpert struct {
	DType                string
	Bits, Group          int
	Data, Scales, Biases []byte
}

// OpenSource maps a checkpoint directory (hf, hf-vl or mlx layout) for reading.
func OpenSource(dir string) (*SourceCheckpoint, error) {
	ck, err := openCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	return &SourceCheckpoint{ck: ck, p: &packer{ck: ck, cfg: &ck.config}, layers: map[int]*layerExperts{}}, nil
}

// Close unmaps the shards; views returned earlier become invalid.
func (s *SourceCheckpoint) Close() { s.ck.Close() }

// Dir is the checkpoint directory.
func (s *SourceCheckpoint) Dir() string { return s.ck.dir }

// Layout is LayoutHF, LayoutHFVL or LayoutMLX.
func (s *SourceCheckpoint) Layout() string { return s.ck.layout }

// NormShifted reports whether zero-centred norms are already stored as 1+w (MLX convention).
func (s *SourceCheckpoint) NormShifted() bool { return s.ck.normShifted }

// Config is the checkpoint's normalised config.
func (s *SourceCheckpoint) Config() *format.Config { return &s.ck.config }

// Tensor looks a non-expert tensor up by canonical name (e.g. "model.layers.3.self_attn.q_proj.weight",
// or its ".scales"/".biases" companions in a quantised checkpoint). An FP8 weight comes back as
// the float32 tensor Convert reads it as (its Data then in memory, not mapped).
func (s *SourceCheckpoint) Tensor(canonical string) (*SourceTensor, bool) {
	t, ok := s.ck.tensor(canonical) // Qwen3-Next's fused projections as Convert splits them
	if !ok {
		return nil, false
	}
	if t.scale != nil {
		t = s.ck.dequantFP8(t) // what Convert packs (fp8.go)
	}
	return &SourceTensor{Name: t.orig, DType: t.dtype, Shape: t.shape, Data: t.data}, true
}

// Expert returns expert e's projection proj ("gate_proj", "up_proj", "down_proj") of layer l,
// whichever way the checkpoint stores experts (per-expert, fused gate_up, or MLX stacked).
func (s *SourceCheckpoint) Expert(l, e int, proj string) (*SourceExpert, error) {
	cfg := &s.ck.config
	if l < 0 || l >= cfg.NumHiddenLayers || e < 0 || e >= cfg.NumExperts {
		return nil, fmt.Errorf("source checkpoint %s: no layer %d expert %d (config: %d layers, %d experts)", s.ck.dir, l, e, cfg.NumHiddenLayers, cfg.NumExperts)
	}
	if _, err := format.ExpertShape(cfg, proj); err != nil {
		return nil, err
	}
	le, err := s.layer(l)
	if err != nil {
		return nil, err
	}
	if le.q != nil {
		ts := le.q[proj]
		n := cfg.NumExperts
		return &SourceExpert{DType: format.DTypeU32, Bits: le.bits, Group: le.group,
			Data: sliceExpert(ts[0].data, n, e), Scales: sliceExpert(ts[1].data, n, e), Biases: sliceExpert(ts[2].data, n, e)}, nil
	}
	return &SourceExpert{DType: le.dtype, Data: le.float(e, proj)}, nil
}

func (s *SourceCheckpoint) layer(l int) (*layerExperts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if le, ok := s.layers[l]; ok {
		return le, nil
	}
	le, err := s.p.findExperts(l)
	if err != nil {
		return nil, err
	}
	s.layers[l] = le
	return le, nil
}

// ReleaseLayer drops layer l's expert pages from this process's resident set once a checker is
// done with them, so comparing a checkpoint larger than RAM does not grow the process without
// bound.
func (s *SourceCheckpoint) ReleaseLayer(l int) {
	s.mu.Lock()
	le := s.layers[l]
	delete(s.layers, l)
	s.mu.Unlock()
	if le != nil {
		for _, t := range le.srcs {
			t.release()
		}
	}
}
