package model

import (
	"slices"
	"testing"
)

// TestMLACacheSnapshot: a DeepSeek-V3 session caches per position and layer only the latent and
// the shared rotary key (kv_lora_rank + qk_rope_head_dim values, which a snapshot holds
// exactly, and --timing reports), a restored snapshot continues to the same logits bit for bit, and a prompt fed in
// chunks of 5 (steps of unequal length after a cache) gives the one-step prefill's logits.
func TestMLACacheSnapshot(t *testing.T) {
	m := open(t, "../arch/deepseek_v3/hf", 16, 0, Options{})
	c := &m.Config
	a, b := []int{1, 5, 9, 13, 2, 7, 11}, []int{3, 8, 4, 300, 6}
	s, _ := m.NewSession()
	s.Timing = &Timing{}
	if _, err := s.Forward(a); err != nil {
		t.Fatal(err)
	}
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	perPos := c.MLA.KVLoraRank + c.MLA.QKRopeHeadDim
	if want := int64(c.NumHiddenLayers * len(a) * perPos * 4); sn.Bytes() != want {
		t.Fatalf("snapshot of %d positions holds %d bytes, want %d (layers × (kv_lora_rank + qk_rope_head_dim) float32)", len(a), sn.Bytes(), want)
	}
	if s.Timing.KVBytes != int64(c.NumHiddenLayers*perPos*4) {
		t.Fatalf("timing reports %d KV bytes per token, want %d", s.Timing.KVBytes, c.NumHiddenLayers*perPos*4)
	}
	s.Timing = nil
	want, err := s.ForwardAll(b)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := m.NewSession()
	if err := other.Restore(sn); err != nil {
		t.Fatal(err)
	}
	got, err := other.ForwardAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatal("a restored MLA cache continues to other logits")
	}
	// Close frees the work space and ends the rotations' Binds (the CPU backend refuses a
	// second Release).
	for _, x := range []*Session{s, other, s} {
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
	}

	ids := append(append([]int(nil), a...), b...)
	full := forwardAll(t, m, ids)
	chunked := open(t, "../arch/deepseek_v3/hf", 16, 0, Options{PrefillChunk: 5})
	V := c.VocabSize
	lg := forwardAll(t, chunked, ids)
	for q := range ids {
		if e := rel(lg[q*V:(q+1)*V], full[q*V:(q+1)*V]); e > 1e-5 {
			t.Fatalf("position %d: chunked prefill vs one step relative error %.3g", q, e)
		}
	}
}

// TestMLAAbsorbedAgainstExpanded: the bf16-long golden's 80-token prompt runs the expanded
// form (one step past mlaAbsorbMaxT) in one model and the absorbed LatentAttention (chunks of
// 16) in the other; both pass transformers' golden, and their logits agree to float32 roundoff.
func TestMLAAbsorbedAgainstExpanded(t *testing.T) {
	g := readGolden(t, "../../arch/deepseek_v3/golden/bf16-long")
	ids := g.i64["input_ids"]
	if len(ids) <= mlaAbsorbMaxT {
		t.Fatalf("the prompt has %d ids: it must exceed mlaAbsorbMaxT (%d) to run the expanded form", len(ids), mlaAbsorbMaxT)
	}
	expanded := open(t, "../arch/deepseek_v3/hf", 16, 0, Options{})
	absorbed := open(t, "../arch/deepseek_v3/hf", 16, 0, Options{PrefillChunk: 16})
	a, b := forwardAll(t, expanded, ids), forwardAll(t, absorbed, ids)
	V := expanded.Config.VocabSize
	want := g.f32["logits"]
	worst, ga, gb := 0.0, 0.0, 0.0
	for p := range ids {
		worst = max(worst, rel(b[p*V:(p+1)*V], a[p*V:(p+1)*V]))
		ga, gb = max(ga, rel(a[p*V:(p+1)*V], want[p*V:(p+1)*V])), max(gb, rel(b[p*V:(p+1)*V], want[p*V:(p+1)*V]))
	}
	t.Logf("against transformers: expanded %.2g, absorbed %.2g; absorbed against expanded %.2g (%d positions)", ga, gb, worst, len(ids))
	if ga > tolLogits || gb > tolLogits {
		t.Errorf("logits against the golden: expanded %.3g, absorbed %.3g (tolerance %g)", ga, gb, tolLogits)
	}
	if worst > 1e-5 || worst == 0 {
		t.Errorf("absorbed and expanded logits differ by %.3g (want roundoff: above 0, at most 1e-5)", worst)
	}
}
