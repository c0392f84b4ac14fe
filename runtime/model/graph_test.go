package model

import (
	"math"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
)

// TestGraphDecodeIdentical: decoding with each layer's fixed ops replayed
// from a graph and the MoE output combined in one launch
// (backend.TokenCombiner) gives the logits of the ops run one by one, bit
// for bit:
// from the first token, after a prefill that reallocates the activations
// and grows the backend's scratch (the graphs are recorded again), and
// with the GPU tier serving the experts. Graphs exist on CUDA only
// (FMOE_TEST_BACKEND=cuda); elsewhere there is nothing to compare.
func TestGraphDecodeIdentical(t *testing.T) {
	if _, ok := testBackend(t).(backend.GraphRecorder); !ok {
		t.Skip("the backend records no graphs (FMOE_TEST_BACKEND=cuda)")
	}
	g := readGolden(t, "bf16-long")
	ids := g.i64["input_ids"]
	layers := 0
	run := func(off bool) (out [][]float32, graphs int) {
		defer func(g, c bool) { graphsOff, combineOff = g, c }(graphsOff, combineOff)
		graphsOff, combineOff = off, off
		m := open(t, "hf", 16, 0, Options{})
		layers = len(m.layers)
		s, err := m.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		step := func(lg []float32, err error) {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, lg)
		}
		for _, id := range ids[:6] {
			step(s.Forward([]int{id}))
		}
		step(s.ForwardAll(ids[6:30]))
		for _, id := range ids[30:36] {
			step(s.Forward([]int{id}))
		}
		for _, x := range s.gr.g {
			if x != nil {
				graphs++
			}
		}
		return out, graphs
	}
	want, n0 := run(true)
	got, n1 := run(false)
	if n0 != 0 || n1 == 0 {
		t.Fatalf("graphs held: %d with graphs off, %d on (want 0 and > 0)", n0, n1)
	}
	for i := range want {
		for j := range want[i] {
			if math.Float32bits(want[i][j]) != math.Float32bits(got[i][j]) {
				t.Fatalf("step %d: logit %d is %v with graphs, %v without", i, j, got[i][j], want[i][j])
			}
		}
	}
	t.Logf("%d steps bit-identical; %d of %d layers held graphs", len(want), n1, layers)
}
