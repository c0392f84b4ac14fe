package model

import (
	"slices"
	"testing"

	"github.com/fmoe/fmoe/format"
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

// TestMLAExpandedCap: with Options.MLAExpandedMax below the bf16-long golden's 80-token prompt,
// its one prompt step runs the absorbed LatentAttention (the counter says so) and the goldens
// still pass (logits within 1e-4, the same greedy tokens); the default cap leaves the prompt
// expanded, and a short prompt is absorbed by its length, not the cap. (Chunked prompts that
// cross the cap: TestMLACapChunked.)
func TestMLAExpandedCap(t *testing.T) {
	for _, c := range []struct {
		golden       string
		limit, chunk int
		wantCapped   bool
		description  string
	}{
		{"bf16-long", 8, 0, true, "one 80-token step past the cap"},
		{"bf16-long", 0, 0, false, "the default cap"},
		{"bf16", 1, 0, false, "a short prompt absorbed by length"},
	} {
		t.Run(c.golden+"/"+c.description, func(t *testing.T) {
			g := readGolden(t, "../../arch/deepseek_v3/golden/"+c.golden)
			m := open(t, "../arch/deepseek_v3/hf", 16, 0, Options{MLAExpandedMax: c.limit, PrefillChunk: c.chunk})
			checkHiddenAndLogits(t, m, g)
			checkGreedy(t, m, g)
			if capped := m.mlaCapped > 0; capped != c.wantCapped {
				t.Errorf("%d layer steps took the absorbed form past the cap, want some: %v", m.mlaCapped, c.wantCapped)
			}
			if c.wantCapped && m.mlaCapped != 2*int64(m.Config.NumHiddenLayers) {
				// checkHiddenAndLogits's step and checkGreedy's prompt, every layer.
				t.Errorf("%d capped layer steps, want %d", m.mlaCapped, 2*m.Config.NumHiddenLayers)
			}
		})
	}
}

// TestMLAScratchBounded: at DeepSeek-V3-671B's shape (its published config: 128 heads of
// 128 + 64 query dims and 128 value dims, kv_lora_rank 512, q_lora_rank 1536) and its default
// context of 163,840 positions, the MLA work space a session reserves (and contextBytes takes
// from the GPU tier) was 54.0 GB with the expanded keys and values for the whole context (54.3
// GB counting the absorbed op's scratch, which mlaScratchBytes now adds); the default cap of
// 8,192 positions brings it to 3.2 GB. The tiny model's contextBytes moves by
// exactly the work space's difference.
func TestMLAScratchBounded(t *testing.T) {
	c := format.Config{NumAttentionHeads: 128, HeadDim: 192,
		MLA: &format.MLA{QLoraRank: 1536, KVLoraRank: 512, QKNopeHeadDim: 128, QKRopeHeadDim: 64, VHeadDim: 128}}
	m := &Model{Config: c, chunk: 512, maxCtx: 163840, mlaExpand: 163840}
	before := mlaScratchBytes(m)
	m.mlaExpand = MLAExpandedDefault
	after := mlaScratchBytes(m)
	t.Logf("671B MLA work space at 163,840 positions: %.2f GB uncapped, %.2f GB capped at %d", float64(before)/1e9, float64(after)/1e9, MLAExpandedDefault)
	perPos := int64(128*(128+128)+64+2*128*192) * 4 // 327,936 bytes
	if before < 163840*perPos || before > 163840*perPos+1e9 {
		t.Errorf("uncapped: %d bytes, want 163,840 × %d plus the per-token buffers (< 1 GB)", before, perPos)
	}
	if after < 8192*perPos || after > 8192*perPos+1e9 || after > 4e9 {
		t.Errorf("capped: %d bytes, want 8,192 × %d plus the per-token buffers (< 1 GB), under 4 GB", after, perPos)
	}
	m.maxCtx = 4096 // a context below the cap reserves only itself
	if got := mlaScratchBytes(m); got >= 8192*perPos || got < 4096*perPos {
		t.Errorf("at 4,096 positions: %d bytes", got)
	}

	small := open(t, "../arch/deepseek_v3/hf", 16, 0, Options{MaxContext: 4096, MLAExpandedMax: 64})
	big := open(t, "../arch/deepseek_v3/hf", 16, 0, Options{MaxContext: 4096})
	if d, w := big.contextBytes()-small.contextBytes(), mlaScratchBytes(big)-mlaScratchBytes(small); d != w || d <= 0 {
		t.Errorf("contextBytes moves by %d with the cap, the MLA work space by %d", d, w)
	}
}

// TestMLACapChunked: a 200-token prompt in steps of 100 with the cap at 150 expands its first
// step (context 100) and runs its second (context 200) absorbed, with expanded keys and values
// for no more than 150 positions; its logits are the all-expanded model's to float32 roundoff.
func TestMLACapChunked(t *testing.T) {
	ids := make([]int, 200)
	for i := range ids {
		ids[i] = (i*37 + 11) % 300
	}
	capped := open(t, "../arch/deepseek_v3/hf", 16, 0, Options{PrefillChunk: 100, MLAExpandedMax: 150})
	expanded := open(t, "../arch/deepseek_v3/hf", 16, 0, Options{PrefillChunk: 100})
	s, err := capped.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.ForwardAll(ids)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := capped.mlaCapped, int64(capped.Config.NumHiddenLayers); got != want {
		t.Errorf("%d layer steps absorbed past the cap, want %d (the second step, every layer)", got, want)
	}
	if s.mla.ctx == 0 || s.mla.ctx > 150 {
		t.Errorf("expanded scratch for %d positions, want 100..150", s.mla.ctx)
	}
	b := forwardAll(t, expanded, ids)
	if expanded.mlaCapped != 0 {
		t.Errorf("the default cap absorbed %d long layer steps", expanded.mlaCapped)
	}
	V, worst := capped.Config.VocabSize, 0.0
	for p := range ids {
		worst = max(worst, rel(a[p*V:(p+1)*V], b[p*V:(p+1)*V]))
	}
	t.Logf("capped against expanded: worst logits relative error %.2g over %d positions", worst, len(ids))
	if worst > 1e-5 {
		t.Errorf("capped and expanded logits differ by %.3g (want float32 roundoff, at most 1e-5)", worst)
	}
}
