package eval

import (
	"context"
	"fmt"
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/golden"
	"github.com/fmoe/fmoe/runtime/model"
)

// Agreement compares a lossy pack with a reference pack of the same model (its bf16 pack, which
// `fmoe-verify golden` shows equals transformers) position by position: both are teacher-forced
// through each case's prompt and the bf16 reference answer, so every position sees the same
// context, and the distributions are compared.
type Agreement struct {
	Positions int
	Top1      int     // positions where both models pick the same next token
	MeanKL    float64 // mean KL(reference ‖ model) per position, nats
	MaxKL     float64
}

// Agree runs the selected cases (all when idx is nil) through m and ref.
func Agree(ctx context.Context, m, ref *model.Model, f *File, idx []int) (*Agreement, error) {
	if m.Config.VocabSize != ref.Config.VocabSize {
		return nil, fmt.Errorf("reference vocabulary %d, model vocabulary %d: not the same model", ref.Config.VocabSize, m.Config.VocabSize)
	}
	if idx == nil {
		for i := range f.Cases {
			idx = append(idx, i)
		}
	}
	sm, err := m.NewSession()
	if err != nil {
		return nil, err
	}
	defer sm.Close()
	sr, err := ref.NewSession()
	if err != nil {
		return nil, err
	}
	defer sr.Close()
	V := m.Config.VocabSize
	a := &Agreement{}
	var klSum float64
	for _, i := range idx {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c := &f.Cases[i]
		// Positions from the last prompt token to the one before the last answer token each
		// predict a reference answer token.
		ids := append(append([]int(nil), c.PromptIDs...), c.ReferenceIDs...)
		ids = ids[:len(ids)-1]
		first := len(c.PromptIDs) - 1
		var outs [2][]float32
		for k, s := range []*model.Session{sm, sr} {
			if err := s.Reset(); err != nil {
				return nil, err
			}
			if outs[k], err = s.ForwardAll(ids); err != nil {
				return nil, fmt.Errorf("case %d: %w", i, err)
			}
		}
		for p := first; p < len(ids); p++ {
			g, r := outs[0][p*V:(p+1)*V], outs[1][p*V:(p+1)*V]
			if backend.FirstMax(g) == backend.FirstMax(r) {
				a.Top1++
			}
			kl := golden.KL(r, g)
			klSum += kl
			a.MaxKL = math.Max(a.MaxKL, kl)
			a.Positions++
		}
	}
	if a.Positions > 0 {
		a.MeanKL = klSum / float64(a.Positions)
	}
	return a, nil
}
