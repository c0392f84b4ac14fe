package model

import (
	"context"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
)

// noArgMax hides a backend's ArgMax (and every other optional interface):
// ForwardGreedy then picks from the logits on the host.
type noArgMax struct{ backend.Backend }

// TestForwardGreedy: ForwardGreedy's picks, where the logits are (the test
// backend's ArgMax: the CPU's, or CUDA's kernel under FMOE_TEST_BACKEND)
// and on the host, are the first maxima of Forward's logits from a twin
// session, over a prompt and eight tokens fed back.
func TestForwardGreedy(t *testing.T) {
	g := readGolden(t, "bf16")
	prompt := g.i64["input_ids"]
	be := testBackend(t)
	if be == nil {
		c := cpu.New(cpu.Options{})
		t.Cleanup(func() { c.Close() })
		be = c
	}
	if _, ok := be.(backend.ArgMaxer); !ok {
		t.Fatalf("the test backend (%s) has no ArgMax", be.Name())
	}
	for _, c := range []struct {
		name string
		be   backend.Backend
	}{{"device", be}, {"host", noArgMax{be}}} {
		t.Run(c.name, func(t *testing.T) {
			m := open(t, "hf", 16, 0, Options{Backend: c.be})
			gs, _ := m.NewSession()
			ls, _ := m.NewSession()
			next := prompt
			for step := range 9 {
				id, err := gs.ForwardGreedy(context.Background(), next)
				if err != nil {
					t.Fatal(err)
				}
				lg, err := ls.Forward(next)
				if err != nil {
					t.Fatal(err)
				}
				if want := argmax(lg); id != want {
					t.Fatalf("step %d: ForwardGreedy %d, the logits' first maximum %d", step, id, want)
				}
				next = []int{id}
			}
		})
	}
}

// TestCheckPicked: a device's flag of non-finite logits is the step's
// error, as checkLogits makes it, and an index outside the vocabulary is
// refused rather than returned.
func TestCheckPicked(t *testing.T) {
	m := &Model{dir: "/packs/x"}
	m.Config.VocabSize = 100
	if err := m.checkPicked([2]float32{7, 0}); err != nil {
		t.Fatalf("a finite pick: %v", err)
	}
	if err := m.checkPicked([2]float32{7, 1}); err == nil || !strings.Contains(err.Error(), "not finite") || !strings.Contains(err.Error(), "/packs/x") {
		t.Errorf("flagged logits: error %v, want one saying they are not finite and naming the pack", err)
	}
	for _, id := range []float32{-1, 100} {
		if err := m.checkPicked([2]float32{id, 0}); err == nil || !strings.Contains(err.Error(), "outside the vocabulary") {
			t.Errorf("pick %v of 100: error %v", id, err)
		}
	}
}

// TestGenerateGreedySteps: the greedy path feeds what Generate always fed:
// the prompt even for no tokens wanted, and not the last token wanted.
func TestGenerateGreedySteps(t *testing.T) {
	g := readGolden(t, "bf16")
	prompt := g.i64["input_ids"]
	m := open(t, "hf", 16, 0, Options{})
	for _, n := range []int{0, 1, 3} {
		s, _ := m.NewSession()
		out, err := s.Generate(prompt, n, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != n || s.Pos() != len(prompt)+max(n-1, 0) {
			t.Errorf("max %d: %d tokens, position %d after a %d-token prompt", n, len(out), s.Pos(), len(prompt))
		}
	}
}
