package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/routetrace"
)

// BenchmarkRouterPrediction measures, on the built-in model (a trained
// Qwen3.5-MoE, models/fmoe-tiny-chat), how well a layer's picks can be
// known one layer early: its router applied to the hidden state the
// layer before leaves (normed with this layer's post-attention norm,
// before this layer's mixer has added to it), the prediction a prefetch of
// the next layer's misses would start its copies from (docs/gpu-decode.md,
// "What limits a layer with misses"). Beside it two baselines: the same
// layer's picks at the token before, and chance (K/E). The eval set's
// prompts with their reference continuations, teacher-forced; every MoE
// layer but the first, every position. Metrics: the share of a layer's K
// picks predicted (pred-%), of layers with all K predicted (pred-all-%),
// of the picks among the prediction's top 2K (pred-2k-%: a prefetch of
// twice as many), and of the picks this layer's router names on the layer
// before's own router input (early-%: known at that layer's routing read,
// a layer sooner, with no sync of its own), from the router input two
// layers before (early2-%), and from both at once (early12-%: a prefetch
// two layers ahead completed by a second one a layer ahead; early12-ids/K
// the ids the two name together, per pick),
// the same for the token before (prev-%, prev-all-%), and chance-%. The
// model has 16 experts and K=4, the 397B 512 and K=10: what carries over
// is the method, and whether the signal is there at all, not the rate.
func BenchmarkRouterPrediction(b *testing.B) {
	dir := packed(b, "../../models/fmoe-tiny-chat/mlx-4bit", 0)
	raw, err := os.ReadFile("../../models/fmoe-tiny-chat/eval/eval.json")
	if err != nil {
		b.Fatal(err)
	}
	var ev struct {
		Cases []struct {
			PromptIDs    []int `json:"prompt_ids"`
			ReferenceIDs []int `json:"reference_ids"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		b.Fatal(err)
	}
	m, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	E, K := m.Config.NumExperts, m.K
	var st predictStats
	for b.Loop() {
		st = predictStats{}
		for _, cs := range ev.Cases {
			ids := append(append([]int(nil), cs.PromptIDs...), cs.ReferenceIDs...)
			ids = ids[:min(len(ids), m.chunk)] // one step: its captures and routes are the whole sequence's
			if err := st.run(m, ids); err != nil {
				b.Fatal(err)
			}
		}
	}
	n := float64(max(st.layers, 1))
	b.ReportMetric(100*float64(st.pred)/n/float64(K), "pred-%")
	b.ReportMetric(100*float64(st.predAll)/n, "pred-all-%")
	b.ReportMetric(100*float64(st.wide)/n/float64(K), "pred-2k-%")
	b.ReportMetric(100*float64(st.early[0])/float64(max(st.early[1], 1))/float64(K), "early-%")
	b.ReportMetric(100*float64(st.early2[0])/float64(max(st.early2[1], 1))/float64(K), "early2-%")
	b.ReportMetric(100*float64(st.union[0])/float64(max(st.union[1], 1))/float64(K), "early12-%")
	b.ReportMetric(float64(st.unionIDs)/float64(max(st.union[1], 1))/float64(K), "early12-ids/K")
	b.ReportMetric(100*float64(st.prev)/float64(max(st.prevLayers, 1))/float64(K), "prev-%")
	b.ReportMetric(100*float64(st.prevAll)/float64(max(st.prevLayers, 1)), "prev-all-%")
	b.ReportMetric(100*float64(K)/float64(E), "chance-%")
	b.ReportMetric(n, "layer-positions")
}

// predictStats counts predicted picks over layer-positions.
type predictStats struct {
	layers, pred, predAll, wide int
	early, early2               [2]int // picks named, layer-positions: from the router input one or two layers before
	union                       [2]int // the same for the two at once
	unionIDs                    int    // the ids the two name together
	prevLayers, prev, prevAll   int
}

// run feeds ids in one step and counts, for each MoE layer after the
// first and each position, the picks the previous layer's output predicts
// through this layer's router, and those the position before had.
func (st *predictStats) run(m *Model, ids []int) error {
	c := &m.Config
	H, E, K := c.HiddenSize, c.NumExperts, m.K
	T := len(ids)
	s, err := m.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	hs := make([][]float32, len(m.layers)) // h after each layer, [T, H]
	picks := make([][]int, len(m.layers))  // each layer's picks, [T, K]
	s.Capture = func(name string, _ int, h []float32) {
		var l int
		if _, err := fmt.Sscanf(name, "layer%d", &l); err == nil {
			hs[l] = append([]float32(nil), h...)
		}
	}
	s.onRoute = func(l int, idx []int, _ []float32) { picks[l] = append([]int(nil), idx...) }
	xns := make([][]float32, len(m.layers)) // each layer's router input, [T, H]
	var inErr error
	s.onRouteIn = func(l int, xn backend.Buffer, T int) {
		xns[l] = make([]float32, T*H)
		inErr = errors.Join(inErr, m.be.Read(xns[l], xn))
	}
	if _, err := s.ForwardAll(ids); err != nil {
		return err
	}
	if inErr != nil {
		return inErr
	}
	be := m.be
	hb, err := be.Alloc(H)
	if err != nil {
		return err
	}
	defer be.Free(hb)
	xb, err := be.Alloc(H)
	if err != nil {
		return err
	}
	defer be.Free(xb)
	lb, err := be.Alloc(E)
	if err != nil {
		return err
	}
	defer be.Free(lb)
	lg := make([]float32, E)
	pred := make([]int, K)
	wide := make([]int, min(2*K, E)) // a prefetch of twice the picks
	both := make([]int, 0, 2*K)      // the union of the two early predictions
	for l := 1; l < len(m.layers); l++ {
		L := &m.layers[l]
		if L.router == nil || picks[l] == nil || hs[l-1] == nil {
			continue
		}
		for t := range T {
			if err := be.Write(hb, hs[l-1][t*H:(t+1)*H]); err != nil {
				return err
			}
			err := errors.Join(be.RMSNorm(xb, hb, backend.Rows(1, H), L.postNorm, float32(c.RMSNormEps)),
				be.MatMul(lb, L.router, xb, 1), be.Read(lg, lb))
			if err != nil {
				return err
			}
			backend.TopK(lg, pred)
			backend.TopK(lg, wide)
			got := picks[l][t*K : (t+1)*K]
			n := routetrace.Shared(pred, got)
			st.wide += routetrace.Shared(wide, got)
			// Earlier still: this layer's router on the router input of
			// the layer d before, known at that layer's routing read-back
			// (a prefetch with PrefetchAhead d).
			both = both[:0]
			for d, c := range []*[2]int{{}, &st.early, &st.early2} {
				if d == 0 || l < d || xns[l-d] == nil {
					continue
				}
				err := errors.Join(be.Write(xb, xns[l-d][t*H:(t+1)*H]), be.MatMul(lb, L.router, xb, 1), be.Read(lg, lb))
				if err != nil {
					return err
				}
				backend.TopK(lg, pred)
				c[0] += routetrace.Shared(pred, got)
				c[1]++
				for _, id := range pred {
					if !slices.Contains(both, id) {
						both = append(both, id)
					}
				}
			}
			// Both distances at once (a prefetch two layers ahead that a
			// second one, a layer ahead, completes): what they name
			// together, and how many ids that takes.
			if l >= 2 && xns[l-2] != nil && xns[l-1] != nil {
				st.union[0] += routetrace.Shared(both, got)
				st.union[1]++
				st.unionIDs += len(both)
			}
			st.layers++
			st.pred += n
			if n == K {
				st.predAll++
			}
			if t > 0 {
				p := routetrace.Shared(picks[l][(t-1)*K:t*K], got)
				st.prevLayers++
				st.prev += p
				if p == K {
					st.prevAll++
				}
			}
		}
	}
	return nil
}
