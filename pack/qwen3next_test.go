package pack

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/quant"
)

// qwen3NextOf writes the Qwen3-Next checkpoint holding the weights of the Qwen3.5-MoE checkpoint
// src (hf layout): each linear-attention layer's in_proj_qkv, in_proj_z, in_proj_b and in_proj_a
// fused, key head by key head, into in_proj_qkvz and in_proj_ba as Qwen3-Next stores them, and
// the config renamed.
func qwen3NextOf(t *testing.T, src string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "qwen3-next")
	writeCheckpoint(t, dir, src, fuseDeltaNet(t, src, "", func(n string) string { return n }))
	editConfig(t, dir, func(m map[string]any) {
		m["model_type"] = "qwen3_next"
		m["architectures"] = []string{"Qwen3NextForCausalLM"}
		m["decoder_sparse_step"] = 1
		m["mlp_only_layers"] = []int{}
		m["norm_topk_prob"] = true
	})
	return dir
}

// fuseDeltaNet returns src's tensors with the DeltaNet input projections fused as Qwen3-Next
// stores them (weights, and an MLX checkpoint's scales and biases row for row), every name
// through rename; pre is the checkpoint's prefix before "model.layers.". What the fusing means
// is transformers' fix_query_key_value_ordering, read backwards: key head g's block of
// in_proj_qkvz is q_g, k_g, then its value heads' v, then their z; in_proj_ba is b_g, a_g.
func fuseDeltaNet(t *testing.T, src, pre string, rename func(string) string) []stEntry {
	t.Helper()
	cfg := sourceConfig(t, src)
	nk, nv, hk, hv := cfg.LinearNumKeyHeads, cfg.LinearNumValueHeads, cfg.LinearKeyHeadDim, cfg.LinearValueHeadDim
	r := nv / nk
	byName := map[string]stEntry{}
	var out []stEntry
	for _, e := range readTensors(t, src) {
		byName[e.name] = e
		if !strings.Contains(e.name, ".linear_attn.in_proj_") {
			out = append(out, stEntry{rename(e.name), e.dtype, e.shape, e.data})
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
		p := pre + format.LayerPrefix(l) + "linear_attn."
		for _, suffix := range []string{".weight", ".scales", ".biases"} {
			qkv, ok := byName[p+"in_proj_qkv"+suffix]
			if !ok {
				continue
			}
			z, b, a := byName[p+"in_proj_z"+suffix], byName[p+"in_proj_b"+suffix], byName[p+"in_proj_a"+suffix]
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
				stEntry{rename(p + "in_proj_qkvz" + suffix), qkv.dtype, []int{nk * (2*hk + 2*r*hv), qkv.shape[1]}, qkvz},
				stEntry{rename(p + "in_proj_ba" + suffix), b.dtype, []int{2 * nv, b.shape[1]}, ba})
		}
	}
	return out
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

// TestQwen3NextMLX: an mlx-community Qwen3-Next conversion (mlx-lm keeps in_proj_qkvz and
// in_proj_ba fused and quantised, names without the language_model. prefix, a flat config)
// packs byte for byte as the Qwen3.5 MLX checkpoint whose rows it holds.
func TestQwen3NextMLX(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "qwen3-next-mlx")
	writeCheckpoint(t, dir, tiny+"mlx-4bit", fuseDeltaNet(t, tiny+"mlx-4bit", "language_model.",
		func(n string) string { return strings.TrimPrefix(n, "language_model.") }))
	editConfig(t, dir, func(m map[string]any) {
		for k, v := range m["text_config"].(map[string]any) {
			m[k] = v
		}
		delete(m, "text_config")
		for _, q := range []string{"quantization", "quantization_config"} { // per-module bits, by module name
			bare := map[string]any{}
			for k, v := range m[q].(map[string]any) {
				bare[strings.TrimPrefix(k, "language_model.")] = v
			}
			m[q] = bare
		}
		m["model_type"] = "qwen3_next"
		m["architectures"] = []string{"Qwen3NextForCausalLM"}
	})
	got, want := convert(t, dir, Options{}), convert(t, tiny+"mlx-4bit", Options{})
	samePack(t, got, want)
	if got.m.Source.Layout != LayoutMLX {
		t.Errorf("layout %s", got.m.Source.Layout)
	}
}

// TestQwen3NextFP8: a block-scaled FP8 checkpoint whose fused projections are FP8 (tiles crossing
// the key-head blocks and partial at the edges) packs as the checkpoint of their float32 values:
// each part is dequantised from its own rows' tiles.
func TestQwen3NextFP8(t *testing.T) {
	next := qwen3NextOf(t, tiny+"hf")
	const br, bc = 40, 48 // 384 and 8 rows, 128 columns: partial tiles everywhere
	var fp8, ref []stEntry
	for _, e := range readTensors(t, next) {
		if !strings.Contains(e.name, "in_proj_qkvz") && !strings.Contains(e.name, "in_proj_ba") {
			fp8, ref = append(fp8, e), append(ref, e)
			continue
		}
		rows, cols := e.shape[0], e.shape[1]
		w := make([]float32, rows*cols)
		if err := quant.DecodeFloats(e.dtype, e.data, w); err != nil {
			t.Fatal(err)
		}
		codes, scales := fp8Tensor(w, rows, cols, br, bc)
		tc := (cols + bc - 1) / bc
		deq := make([]float32, rows*cols)
		for i, c := range codes {
			deq[i] = fp8Want(c, scales[(i/cols/br)*tc+(i%cols)/bc])
		}
		fp8 = append(fp8, stEntry{e.name, quant.DTypeF8E4M3, e.shape, codes},
			stEntry{strings.TrimSuffix(e.name, "weight") + "weight_scale_inv", format.DTypeF32, []int{len(scales) / tc, tc}, floatBytes(format.DTypeF32, scales)})
		ref = append(ref, stEntry{e.name, format.DTypeF32, e.shape, floatBytes(format.DTypeF32, deq)})
	}
	fp8Dir, refDir := filepath.Join(t.TempDir(), "fp8"), filepath.Join(t.TempDir(), "ref")
	writeCheckpoint(t, fp8Dir, next, fp8)
	writeCheckpoint(t, refDir, next, ref)
	editConfig(t, fp8Dir, func(m map[string]any) {
		m["quantization_config"] = map[string]any{"fmt": "e4m3", "quant_method": "fp8", "weight_block_size": []int{br, bc}}
	})
	for _, o := range []Options{{Bits: 16}, {}} {
		got, want := convert(t, fp8Dir, o), convert(t, refDir, o)
		samePack(t, got, want)
		var log bytes.Buffer
		o.Log = &log
		convert(t, fp8Dir, o)
		if strings.Contains(log.String(), "not used") {
			t.Errorf("bits %d: %s", o.Bits, log.String())
		}
	}
}
