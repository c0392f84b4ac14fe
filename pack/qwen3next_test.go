package pack

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
)

// qwen3NextOf writes the Qwen3-Next checkpoint holding the weights of the Qwen3.5-MoE checkpoint
// hf: each linear-attention layer's in_proj_qkv, in_proj_z, in_proj_b and in_proj_a fused,
// key head by key head, into in_proj_qkvz and in_proj_ba as Qwen3-Next stores them, and the
// config renamed. (What the fusing means is transformers' fix_query_key_value_ordering, read
// backwards: key head g's block is q_g, k_g, then its value heads' v, then their z; b and a
// likewise.)
func qwen3NextOf(t *testing.T, hf string) string {
	t.Helper()
	cfg := sourceConfig(t, hf)
	nk, nv, hk, hv := cfg.LinearNumKeyHeads, cfg.LinearNumValueHeads, cfg.LinearKeyHeadDim, cfg.LinearValueHeadDim
	r := nv / nk
	byName := map[string]stEntry{}
	var out []stEntry
	for _, e := range readTensors(t, hf) {
		byName[e.name] = e
		if !strings.Contains(e.name, ".linear_attn.in_proj_") {
			out = append(out, e)
		}
	}
	// rows returns n rows of e from row r0.
	rows := func(e stEntry, r0, n int) []byte {
		rb := len(e.data) / e.shape[0]
		return e.data[r0*rb : (r0+n)*rb]
	}
	for l, lt := range cfg.LayerTypes {
		if lt != format.LinearAttention {
			continue
		}
		p := format.LayerPrefix(l) + "linear_attn."
		qkv, z, b, a := byName[p+"in_proj_qkv.weight"], byName[p+"in_proj_z.weight"], byName[p+"in_proj_b.weight"], byName[p+"in_proj_a.weight"]
		var qkvz, ba []byte
		for g := 0; g < nk; g++ {
			qkvz = append(qkvz, rows(qkv, g*hk, hk)...)             // q_g
			qkvz = append(qkvz, rows(qkv, nk*hk+g*hk, hk)...)       // k_g
			qkvz = append(qkvz, rows(qkv, 2*nk*hk+g*r*hv, r*hv)...) // v of value heads g·r … g·r+r-1
			qkvz = append(qkvz, rows(z, g*r*hv, r*hv)...)
			ba = append(ba, rows(b, g*r, r)...)
			ba = append(ba, rows(a, g*r, r)...)
		}
		out = append(out,
			stEntry{p + "in_proj_qkvz.weight", qkv.dtype, []int{nk * (2*hk + 2*r*hv), cfg.HiddenSize}, qkvz},
			stEntry{p + "in_proj_ba.weight", b.dtype, []int{2 * nv, cfg.HiddenSize}, ba})
	}
	dir := filepath.Join(t.TempDir(), "qwen3-next")
	writeCheckpoint(t, dir, hf, out)
	editConfig(t, dir, func(m map[string]any) {
		m["model_type"] = "qwen3_next"
		m["architectures"] = []string{"Qwen3NextForCausalLM"}
		m["decoder_sparse_step"] = 1
		m["mlp_only_layers"] = []int{}
		m["norm_topk_prob"] = true
	})
	return dir
}

// sourceConfig parses a checkpoint's config.json.
func sourceConfig(t *testing.T, dir string) *format.Config {
	t.Helper()
	ck := openSource(t, dir)
	defer ck.Close()
	c := ck.config
	return &c
}

// TestQwen3NextPacksAsQwen35: a Qwen3-Next checkpoint packs byte for byte as the Qwen3.5-MoE
// checkpoint with the same weights (its fused projections split back into Qwen3.5's four), so
// Qwen3.5's goldens (runtime/golden, runtime/model) check what it computes; the shared Qwen3-Next
// fixture's transformers goldens pass by hand (docs/families.md).
func TestQwen3NextPacksAsQwen35(t *testing.T) {
	next := qwen3NextOf(t, tiny+"hf")
	for _, o := range []Options{{Bits: 16}, {}, {Bits: 2, Rule: "mlx"}} {
		got, want := convert(t, next, o), convert(t, tiny+"hf", o)
		samePack(t, got, want)
		if got.m.Source.Architecture != format.ArchQwen35MoE || got.m.Config.Architecture != format.ArchQwen35MoE {
			t.Errorf("bits %d: architecture %q / %q, want %q", o.Bits, got.m.Source.Architecture, got.m.Config.Architecture, format.ArchQwen35MoE)
		}
	}
}

// TestQwen3NextSourceTensor: fmoe-verify --source reads the split projections as Convert does.
func TestQwen3NextSourceTensor(t *testing.T) {
	next := qwen3NextOf(t, tiny+"hf")
	a, err := OpenSource(next)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenSource(tiny + "hf")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, part := range []string{"in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a"} {
		name := "model.layers.4.linear_attn." + part + ".weight"
		ta, ok := a.Tensor(name)
		tb, _ := b.Tensor(name)
		if !ok || string(ta.Data) != string(tb.Data) || ta.Shape[0] != tb.Shape[0] || !strings.Contains(ta.Name, "in_proj_qkvz") && !strings.Contains(ta.Name, "in_proj_ba") {
			t.Errorf("%s: found %v, named %q", name, ok, ta.Name)
		}
	}
}

// TestQwen3NextBadInputs: a fused projection missing, misshapen or of a dtype the packer does not
// split is refused by name, before anything is written.
func TestQwen3NextBadInputs(t *testing.T) {
	const qkvz, ba = "model.layers.1.linear_attn.in_proj_qkvz.weight", "model.layers.2.linear_attn.in_proj_ba.weight"
	for _, c := range []struct {
		tensor string
		mutate func(e *stEntry) bool
		want   []string
	}{
		{qkvz, func(e *stEntry) bool { e.shape = []int{e.shape[0] / 2, 2 * e.shape[1]}; return true },
			[]string{qkvz, "[192 256]", "[384 128]"}},
		{ba, func(e *stEntry) bool { e.shape = []int{e.shape[0] / 2, e.shape[1], 2}; return true },
			[]string{ba, "[4 128 2]", "[8 128]"}},
		{ba, func(*stEntry) bool { return false }, []string{ba, "missing", "fused"}},
		{qkvz, func(e *stEntry) bool { e.dtype = "I16"; return true }, []string{qkvz, "I16"}},
	} {
		t.Run(strings.Join(c.want[1:], " "), func(t *testing.T) {
			src := qwen3NextOf(t, tiny+"hf")
			rewriteShard(t, src, c.tensor, c.mutate)
			expectFailure(t, src, Options{Bits: 16}, c.want...)
		})
	}
}
