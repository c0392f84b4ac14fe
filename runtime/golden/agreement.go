package golden

import (
	"fmt"
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/model"
)

// Agreement measures how far a lossy pack (4-bit, 2-bit) drifts from the reference: it cannot
// meet the exact tolerance, so it is judged by top-1 agreement and KL divergence instead.
type Agreement struct {
	Positions int
	Top1      int     // positions whose argmax equals the reference's
	MeanKL    float64 // mean over positions of KL(reference ‖ ours), in nats
	MaxKL     float64
}

// Top1Rate is the share of positions with the reference's argmax.
func (a *Agreement) Top1Rate() float64 { return float64(a.Top1) / float64(a.Positions) }

// Agree runs the golden prompt followed by the reference's greedy continuation (teacher forcing:
// every position sees the reference's context) and compares each position's distribution.
func Agree(m *model.Model, f *File) (*Agreement, error) {
	if f.Vocab != m.Config.VocabSize {
		return nil, fmt.Errorf("golden vocabulary %d, model vocabulary %d", f.Vocab, m.Config.VocabSize)
	}
	s, err := m.NewSession()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	V := f.Vocab
	ids := append(append([]int(nil), f.InputIDs...), f.Generated...)
	ref := append(append([]float32(nil), f.Logits...), f.GeneratedLogits...)
	// The reference logits at the last prompt position equal generated_logits[0]; each later
	// generated token's logits come from feeding the previous generated token.
	n := len(f.InputIDs) + max(len(f.Generated)-1, 0)
	got, err := s.ForwardAll(ids[:n])
	if err != nil {
		return nil, err
	}
	refRows := make([][]float32, 0, n)
	for p := 0; p < len(f.InputIDs); p++ {
		refRows = append(refRows, ref[p*V:(p+1)*V])
	}
	for i := 1; i < len(f.Generated); i++ {
		refRows = append(refRows, f.GeneratedLogits[i*V:(i+1)*V])
	}
	a := &Agreement{Positions: n}
	for p := 0; p < n; p++ {
		g, r := got[p*V:(p+1)*V], refRows[p]
		if backend.FirstMax(g) == backend.FirstMax(r) {
			a.Top1++
		}
		kl := KL(r, g)
		a.MeanKL += kl / float64(n)
		a.MaxKL = math.Max(a.MaxKL, kl)
	}
	return a, nil
}

// KL is KL(softmax(p) ‖ softmax(q)) in nats, computed in float64.
func KL(p, q []float32) float64 {
	lp, lq := logSoftmax(p), logSoftmax(q)
	var kl float64
	for i := range lp {
		kl += math.Exp(lp[i]) * (lp[i] - lq[i])
	}
	return kl
}

func logSoftmax(x []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	ls := m + math.Log(s)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v) - ls
	}
	return out
}
