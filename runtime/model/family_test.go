package model

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/pack"
)

// The other families' goldens (testdata/arch, from transformers): each
// family's hf checkpoint packed at 16 bits, every golden file, with the
// experts-per-token override of the k2 files.
var familyCases = []struct {
	family, golden string
	k              int
}{
	{"qwen3_moe", "bf16", 0},
	{"qwen3_moe", "bf16-long", 0},
	{"qwen3_moe", "bf16-k2", 2},
	{"glm4_moe", "bf16", 0},
	{"glm4_moe", "bf16-long", 0},
	{"glm4_moe", "bf16-k2", 2},
	{"deepseek_v3", "bf16", 0},
	{"deepseek_v3", "bf16-long", 0},
	{"deepseek_v3", "bf16-k2", 2},
}

// TestFamilyGolden compares the batched prefill with transformers (the
// residual stream after every layer, then the logits at every position)
// and decodes the greedy continuation through the caches (every token and
// the logits that chose it).
func TestFamilyGolden(t *testing.T) {
	for _, c := range familyCases {
		t.Run(c.family+"/"+c.golden, func(t *testing.T) {
			g := readGolden(t, "../../arch/"+c.family+"/golden/"+c.golden)
			m := open(t, "../arch/"+c.family+"/hf", 16, c.k, Options{})
			if m.Config.Architecture != c.family {
				t.Fatalf("architecture %q, want %q", m.Config.Architecture, c.family)
			}
			checkHiddenAndLogits(t, m, g)
			checkGreedy(t, m, g)
		})
	}
}

func checkHiddenAndLogits(t *testing.T, m *Model, g *golden) {
	t.Helper()
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	hidden := map[string][]float32{}
	s.Capture = func(name string, T int, h []float32) {
		hidden[name] = append([]float32(nil), h...)
	}
	ids := g.i64["input_ids"]
	logits, err := s.ForwardAll(ids)
	if err != nil {
		t.Fatal(err)
	}
	H, V := m.Config.HiddenSize, m.Config.VocabSize
	names := []string{"embed"}
	for l := 0; l < m.Config.NumHiddenLayers; l++ {
		names = append(names, fmt.Sprintf("layer%02d", l))
	}
	names = append(names, "final_norm")
	var errs []string
	for _, n := range names {
		want, got := g.f32["hidden."+n], hidden[n]
		if len(want) == 0 || len(got) != len(want) {
			t.Fatalf("hidden %s: %d values, golden %d", n, len(got), len(want))
		}
		worst := 0.0
		for p := range ids {
			worst = max(worst, rel(got[p*H:(p+1)*H], want[p*H:(p+1)*H]))
		}
		errs = append(errs, fmt.Sprintf("%s %.2g", n, worst))
		if worst > tolLogits {
			t.Fatalf("first diverging hidden state: %s, worst position error %.3g (before: %v)", n, worst, errs)
		}
	}
	t.Logf("hidden-state errors: %v", errs)
	worst, wp := 0.0, 0
	want := g.f32["logits"]
	for p := range ids {
		if e := rel(logits[p*V:(p+1)*V], want[p*V:(p+1)*V]); e > worst {
			worst, wp = e, p
		}
		if a, b := argmax(logits[p*V:(p+1)*V]), argmax(want[p*V:(p+1)*V]); a != b {
			t.Errorf("position %d: top-1 %d, golden %d", p, a, b)
		}
	}
	t.Logf("prefill: %d positions, worst logits relative error %.3g (position %d)", len(ids), worst, wp)
	if worst > tolLogits {
		t.Errorf("logits relative error %.3g at position %d > %g", worst, wp, tolLogits)
	}
}

func checkGreedy(t *testing.T, m *Model, g *golden) {
	t.Helper()
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	wantIDs, wantLg := g.i64["generated_ids"], g.f32["generated_logits"]
	if len(wantIDs) == 0 {
		t.Fatal("golden file has no generated_ids")
	}
	V := m.Config.VocabSize
	lg, err := s.Forward(g.i64["input_ids"])
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i, want := range wantIDs {
		worst = max(worst, rel(lg, wantLg[i*V:(i+1)*V]))
		if got := argmax(lg); got != want {
			t.Fatalf("token %d: generated %d, golden %d", i, got, want)
		}
		if lg, err = s.Forward([]int{want}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("decode: %d/%d greedy tokens identical; worst logits relative error %.3g", len(wantIDs), len(wantIDs), worst)
	if worst > tolLogits {
		t.Errorf("generated logits relative error %.3g > %g", worst, tolLogits)
	}
}

// TestFamilyDenseLayerReaders: a pack whose first layer is dense (GLM-4.5,
// an empty expert file) reads through every expert path — the raw files,
// the LZ4 copy and a requantised 2-bit set — and the LZ4 copy gives the
// raw files' logits bit for bit.
func TestFamilyDenseLayerReaders(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "m")
	copyDir(t, packed(t, "../arch/glm4_moe/hf", 4), dir)
	if _, err := pack.Requant(ctx, pack.RequantOptions{Model: dir, Bits: 2}); err != nil {
		t.Fatal(err)
	}
	for _, bits := range []int{0, 2} {
		if _, err := pack.LZ4(ctx, pack.LZ4Options{Model: dir, Bits: bits}); err != nil {
			t.Fatal(err)
		}
		var logits [2][]float32
		for i, lz := range []bool{false, true} {
			m, err := Open(dir, Options{LZ4: lz, ExpertBits: bits})
			if err != nil {
				t.Fatal(err)
			}
			logits[i] = forwardAll(t, m, timingPrompt)
			m.Close()
		}
		if !slices.Equal(logits[0], logits[1]) {
			t.Errorf("%d-bit set: the LZ4 copy's logits differ from the raw files'", bits)
		}
	}
}

// TestFamilySynthDecodeEqualsPrefill runs each family's synthetic test
// shape (fmoe-pack synth) with what the transformers fixtures lack — a
// Qwen3-MoE dense layer; GLM grouped routing and q/k norm; DeepSeek-V3's q_proj
// without LoRA, rotary pairs not interleaved, a YaRN attention factor: logits are
// finite, and feeding the prompt
// one token at a time through the caches gives the batched forward's.
func TestFamilySynthDecodeEqualsPrefill(t *testing.T) {
	for _, preset := range []string{"qwen3-moe-tiny", "glm4-moe-tiny", "deepseek-v3-tiny"} {
		t.Run(preset, func(t *testing.T) {
			m, err := Open(synthPacked(t, preset), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if !m.Config.Dense(0) {
				t.Fatalf("%s: layer 0 is not dense", preset)
			}
			if c := &m.Config; c.Architecture == "glm4_moe" && (c.NGroup != 4 || !c.UseQKNorm || m.layers[1].qNorm == nil) {
				t.Fatalf("glm4-moe-tiny: n_group %d, use_qk_norm %v", c.NGroup, c.UseQKNorm)
			}
			if c := &m.Config; c.Architecture == format.ArchDeepseekV3 {
				if r := newMLARope(c); c.MLA.QLoraRank != 0 || c.MLA.RopeInterleave || c.MLA.VHeadDim >= c.MLA.QKNopeHeadDim || r.att == 1 || c.NGroup != 4 {
					t.Fatalf("deepseek-v3-tiny: mla %+v, attention factor %v, n_group %d", *c.MLA, r.att, c.NGroup)
				}
			}
			ids := []int{3, 17, 400, 9, 1023, 5, 77, 12}
			full := forwardAll(t, m, ids)
			for i, v := range full {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("logit %d is %v", i, v)
				}
			}
			V := m.Config.VocabSize
			s, _ := m.NewSession()
			for p, id := range ids {
				lg, err := s.Forward([]int{id})
				if err != nil {
					t.Fatal(err)
				}
				if e := rel(lg, full[p*V:(p+1)*V]); e > 1e-5 {
					t.Fatalf("position %d: decode vs prefill relative error %.3g", p, e)
				}
			}
		})
	}
}

// synthPacked writes a preset's synthetic checkpoint (hf layout, seed 3) and packs it at 16 bits.
func synthPacked(t *testing.T, preset string) string {
	t.Helper()
	ctx := context.Background()
	src, out := filepath.Join(t.TempDir(), "ck"), filepath.Join(t.TempDir(), "m")
	if _, err := pack.Synth(ctx, pack.SynthOptions{Preset: preset, Layout: "hf", Out: src, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := pack.Convert(ctx, pack.Options{In: src, Out: out, Bits: 16}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEveryFamilyRuns: every architecture the format accepts has a layer
// builder here, so a pack that validates also opens.
func TestEveryFamilyRuns(t *testing.T) {
	for _, a := range format.Architectures() {
		if families[a] == nil {
			t.Errorf("architecture %q has no runtime family", a)
		}
	}
	if len(families) != len(format.Architectures()) {
		t.Errorf("%d runtime families for %d architectures", len(families), len(format.Architectures()))
	}
}
