package model

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Sampler picks the next token from logits. The zero value is greedy.
type Sampler struct {
	// Temperature ≤ 0 means greedy (argmax, ties to the lower id).
	Temperature float64
	// TopK keeps the K most likely tokens (0: all).
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches TopP (0 or ≥ 1: all).
	TopP float64
	// Seed makes sampling reproducible.
	Seed uint64

	rng *rand.Rand
	idx []int
	p   []float64
}

// Sample returns the chosen token id.
func (s *Sampler) Sample(logits []float32) (int, error) {
	if len(logits) == 0 {
		return 0, fmt.Errorf("model: sample from empty logits")
	}
	if s.Greedy() {
		return backend.FirstMax(logits), nil
	}
	if s.rng == nil {
		s.rng = rand.New(rand.NewPCG(s.Seed, 0x9e3779b97f4a7c15))
	}
	// Sort ids by logit (descending, ties to the lower id) so top-k and
	// top-p are prefixes.
	s.idx = s.idx[:0]
	for i := range logits {
		s.idx = append(s.idx, i)
	}
	slices.SortStableFunc(s.idx, func(a, b int) int {
		switch {
		case logits[a] > logits[b]:
			return -1
		case logits[a] < logits[b]:
			return 1
		}
		return 0
	})
	n := len(s.idx)
	if s.TopK > 0 && s.TopK < n {
		n = s.TopK
	}
	m := float64(logits[s.idx[0]])
	s.p = s.p[:0]
	var z float64
	for _, i := range s.idx[:n] {
		e := math.Exp((float64(logits[i]) - m) / s.Temperature)
		s.p = append(s.p, e)
		z += e
	}
	if s.TopP > 0 && s.TopP < 1 {
		var c float64
		for j, e := range s.p {
			c += e / z
			if c >= s.TopP {
				n = j + 1
				break
			}
		}
		z = 0
		for _, e := range s.p[:n] {
			z += e
		}
	}
	r := s.rng.Float64() * z
	for j, e := range s.p[:n] {
		r -= e
		if r < 0 {
			return s.idx[j], nil
		}
	}
	return s.idx[n-1], nil
}

// Greedy reports whether the sampler always takes the first maximum (a
// caller may then pick with Session.ForwardGreedy instead of Sample).
func (s *Sampler) Greedy() bool { return s.Temperature <= 0 || s.TopK == 1 }

// Generate feeds prompt, then samples up to max tokens one at a time
// through the caches, stopping after a token in stop. onToken, if not nil,
// sees each token as it is chosen and may return false to stop. It returns
// the generated ids (including a final stop token).
func (s *Session) Generate(prompt []int, max int, smp *Sampler, stop []int, onToken func(id int) bool) ([]int, error) {
	if smp == nil {
		smp = &Sampler{}
	}
	if smp.Greedy() {
		return s.generateGreedy(prompt, max, stop, onToken)
	}
	// One buffer for the logits of every step: they are read only until
	// the next.
	logits, err := s.ForwardContextInto(context.Background(), s.gen, prompt)
	if err != nil {
		return nil, err
	}
	s.gen = logits
	var out []int
	for len(out) < max {
		t0 := s.sampleStart()
		id, err := smp.Sample(logits)
		s.sampleDone(t0, len(out) == 0)
		if err != nil {
			return out, err
		}
		out = append(out, id)
		if onToken != nil && !onToken(id) {
			break
		}
		if slices.Contains(stop, id) || len(out) == max {
			break
		}
		if logits, err = s.ForwardContextInto(context.Background(), s.gen, []int{id}); err != nil {
			return out, err
		}
	}
	return out, nil
}

// generateGreedy is Generate for a greedy sampler: each step picks its
// token with ForwardGreedy, where the logits are when the backend can. The
// steps are Generate's: the prompt fed even when max is 0, the last token
// wanted not fed.
func (s *Session) generateGreedy(prompt []int, max int, stop []int, onToken func(id int) bool) ([]int, error) {
	id, err := s.ForwardGreedy(context.Background(), prompt)
	if err != nil {
		return nil, err
	}
	var out []int
	for len(out) < max {
		// The pick is the step's (the head's phase): a sample of no time.
		s.sampleDone(s.sampleStart(), len(out) == 0)
		out = append(out, id)
		if onToken != nil && !onToken(id) || slices.Contains(stop, id) || len(out) == max {
			break
		}
		if id, err = s.ForwardGreedy(context.Background(), []int{id}); err != nil {
			return out, err
		}
	}
	return out, nil
}
