package model

import (
	"context"
	"fmt"

	"github.com/fmoe/fmoe/runtime/backend"
)

// ForwardGreedy feeds ids at the next positions and returns the greedy
// next token: the first maximum of the last position's logits, as
// Sampler's greedy path picks it. Where the backend is a
// backend.ArgMaxer the pick and the logits' finiteness check run where
// the logits are, and the step reads back 8 bytes instead of the
// vocabulary's logits (on a GPU, ~1 MB, a host pass to check them and one
// to pick); else it picks from the logits on the host. Either way a NaN or
// an infinity in the logits is an error, as Forward's.
func (s *Session) ForwardGreedy(ctx context.Context, ids []int) (int, error) {
	am, ok := s.m.be.(backend.ArgMaxer)
	if !ok {
		lg, err := s.ForwardContextInto(ctx, s.gen, ids)
		if err != nil {
			return 0, err
		}
		s.gen = lg
		return backend.FirstMax(lg), nil
	}
	s.greedy = am
	defer func() { s.greedy = nil }()
	if _, err := s.forward(ctx, ids, false); err != nil {
		return 0, err
	}
	return int(s.picked[0]), nil
}

// checkPicked is checkLogits for a step whose logits stayed on the device:
// ArgMax's flag says whether any was not finite, not which.
func (m *Model) checkPicked(p [2]float32) error {
	if p[1] == 0 {
		if id := int(p[0]); id >= 0 && id < m.Config.VocabSize {
			return nil
		}
		return fmt.Errorf("model: the device's argmax returned token id %v, outside the vocabulary [0, %d)", p[0], m.Config.VocabSize)
	}
	return m.notFinite("a NaN or Inf among them")
}
