package cpu

import (
	"math"

	"github.com/fmoe/fmoe/runtime/backend"
)

var _ backend.DeviceRouter = (*Backend)(nil)

// RouteTopK is backend.DeviceRouter on the host: backend.Route per token,
// with the probabilities over all E (the model's softmaxRoute) when
// !renorm, the picks then in ascending id. A token with a NaN logit gets ids 0..K-1, weights 0 and sets
// status[0] to 1, as the device does (it cannot fail without a sync).
func (be *Backend) RouteTopK(ids, w, status, logits backend.Buffer, T, E, K int, renorm bool) error {
	var bufs [4][]float32
	for i, b := range []backend.Buffer{ids, w, status, logits} {
		d, err := be.data(b, [...]string{"route ids", "route weights", "route status", "route logits"}[i])
		if err != nil {
			return err
		}
		bufs[i] = d
	}
	id, wd, st, lg := bufs[0], bufs[1], bufs[2], bufs[3]
	if err := backend.CheckRouteTopK("cpu", len(id), len(wd), len(st), len(lg), T, E, K); err != nil {
		return err
	}
	idx := make([]int, K)
	for t := 0; t < T; t++ {
		row, ot, wt := lg[t*E:(t+1)*E], id[t*K:(t+1)*K], wd[t*K:(t+1)*K]
		if backend.Route(row, K, idx, wt) != nil { // the sizes are checked: only a NaN fails
			st[0] = 1
			for j := range ot {
				ot[j], wt[j] = float32(j), 0
			}
			continue
		}
		if !renorm {
			probs(row, idx, wt)
		}
		ascending(idx, wt)
		for j, e := range idx {
			ot[j] = float32(e)
		}
	}
	return nil
}

// ascending sorts the picks idx, with their weights w, by id (the
// contract's order; K is small).
func ascending(idx []int, w []float32) {
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0 && idx[j] < idx[j-1]; j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
			w[j], w[j-1] = w[j-1], w[j]
		}
	}
}

// probs writes the softmax probabilities of the experts idx over all of
// row, exp(l_i-m)/Σ_all exp(l_j-m) with m the largest, in float64.
func probs(row []float32, idx []int, w []float32) {
	m := float64(row[idx[0]])
	var all float64
	for _, l := range row {
		all += math.Exp(float64(l) - m)
	}
	for j, e := range idx {
		w[j] = float32(math.Exp(float64(row[e])-m) / all)
	}
}
