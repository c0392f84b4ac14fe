package pack

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// setElem overwrites element i of a tensor with raw bits (bf16/f16 or f32 by the dtype).
func setElem(t *testing.T, dir, tensor string, i int, bits uint32) {
	t.Helper()
	rewriteShard(t, dir, tensor, func(e *stEntry) bool {
		e.data = bytes.Clone(e.data)
		if e.dtype == "F32" {
			binary.LittleEndian.PutUint32(e.data[4*i:], bits)
		} else {
			binary.LittleEndian.PutUint16(e.data[2*i:], uint16(bits))
		}
		return true
	})
}

// A NaN or infinity anywhere convert copies or quantises is an error naming the file, the
// tensor, the expert where there is one, and the element.
func TestNonFiniteRejected(t *testing.T) {
	const bfNaN, bfInf, bfNegInf = 0x7fc0, 0x7f80, 0xff80
	expertElems := 128 * 128 // hf-vl gate_up_proj is [16, 2*64, 128]
	cases := []struct {
		name, src, tensor string
		elem              int
		bits              uint32
		o                 Options
		wants             []string
	}{
		{"final norm (shifted on the way)", "hf", "model.norm.weight", 7, bfInf, Options{}, []string{"element 7 is +Inf"}},
		{"layer norm copied", "mlx-4bit", "language_model.model.layers.2.input_layernorm.weight", 0, bfNaN, Options{}, []string{"element 0 is NaN"}},
		{"A_log", "mlx-4bit", "language_model.model.layers.0.linear_attn.A_log", 1, 0xff800000, Options{}, []string{"element 1 is -Inf"}},
		{"mlx expert scales", "mlx-4bit", "language_model.model.layers.2.mlp.switch_mlp.down_proj.scales", 3*128 + 10, bfNaN, Options{}, []string{"(expert 3)", "element 394 is NaN"}},
		{"hf expert quantised", "hf", "model.layers.2.mlp.experts.3.up_proj.weight", 9, bfNegInf, Options{}, []string{"(expert 3 up_proj)", "element 9 is -Inf"}},
		{"hf expert kept bf16", "hf", "model.layers.2.mlp.experts.3.up_proj.weight", 9, bfNaN, Options{Bits: 16}, []string{"(expert 3 up_proj)", "element 9 is NaN"}},
		{"fused expert up half", "hf-vl", "model.language_model.layers.2.mlp.experts.gate_up_proj", 2*expertElems + 64*128 + 5, bfNaN, Options{}, []string{"(expert 2 up_proj)", fmt.Sprintf("element %d is NaN", 2*expertElems+64*128+5)}},
		{"dense matrix kept bf16", "hf", "model.layers.0.linear_attn.out_proj.weight", 100, bfInf, Options{DenseBits: 16}, []string{"element 100 is +Inf"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := copyDir(t, tiny+c.src)
			shard := shardOf(t, d, c.tensor)
			setElem(t, d, c.tensor, c.elem, c.bits)
			expectFailure(t, d, c.o, append(c.wants, "tensor "+c.tensor, "in "+filepath.Join(d, shard))...)
		})
	}
}

func TestNonFinite(t *testing.T) {
	f32 := func(v ...uint32) []byte {
		var b []byte
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, x)
		}
		return b
	}
	f16 := func(v ...uint16) []byte {
		var b []byte
		for _, x := range v {
			b = binary.LittleEndian.AppendUint16(b, x)
		}
		return b
	}
	cases := []struct {
		dtype string
		data  []byte
		i     int
		kind  string
	}{
		{"BF16", f16(0x3f80, 0x7f7f, 0xff7f, 0x0001), -1, ""}, // 1, max finite, -max finite, subnormal
		{"BF16", f16(0x3f80, 0x7f81), 1, "NaN"},
		{"BF16", f16(0xff80), 0, "-Inf"},
		{"F16", f16(0x7bff, 0x7c00), 1, "+Inf"},
		{"F16", f16(0xfe00), 0, "NaN"},
		{"F32", f32(0x7f7fffff, 0x7f800000), 1, "+Inf"},
		{"F32", f32(0xffc00000), 0, "NaN"},
		{"U32", f32(0x7f800000), -1, ""},
	}
	for _, c := range cases {
		if i, kind := nonFinite(c.dtype, c.data); i != c.i || kind != c.kind {
			t.Errorf("%s %x: (%d, %q), want (%d, %q)", c.dtype, c.data, i, kind, c.i, c.kind)
		}
	}
}

// Config values out of range are errors naming the field (nested text_config too).
func TestConfigOutOfRange(t *testing.T) {
	cases := []struct {
		name  string
		src   string
		edit  func(m map[string]any)
		wants []string
	}{
		{"eps zero", "hf", func(m map[string]any) { m["rms_norm_eps"] = 0 }, []string{"rms_norm_eps is 0"}},
		{"eps negative", "hf", func(m map[string]any) { m["rms_norm_eps"] = -1e-6 }, []string{"rms_norm_eps is -1e-06"}},
		{"eps nested", "hf-vl", func(m map[string]any) { m["text_config"].(map[string]any)["rms_norm_eps"] = 0 }, []string{"rms_norm_eps is 0"}},
		{"eos beyond vocab", "hf", func(m map[string]any) { m["eos_token_id"] = 2048 }, []string{"eos_token_id (here or in generation_config.json) is 2048", "vocab_size 2048"}},
		{"eos negative", "hf", func(m map[string]any) { m["eos_token_id"] = []int{2037, -1} }, []string{"eos_token_id (here or in generation_config.json) is -1"}},
		{"rope theta", "hf", func(m map[string]any) { m["rope_parameters"].(map[string]any)["rope_theta"] = -5 }, []string{"rope_theta is -5"}},
		{"rotary factor", "hf", func(m map[string]any) { m["rope_parameters"].(map[string]any)["partial_rotary_factor"] = 0 }, []string{"partial_rotary_factor is 0"}},
		{"max positions", "hf", func(m map[string]any) { m["max_position_embeddings"] = 0 }, []string{"max_position_embeddings is 0"}},
		{"tokenizer past vocab", "hf", func(m map[string]any) { m["vocab_size"] = 2000 }, []string{"tokenizer.json has 2048 tokens", "vocab_size is 2000"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := copyDir(t, tiny+c.src)
			editConfig(t, d, c.edit)
			expectFailure(t, d, Options{}, append(c.wants, "config.json")...)
		})
	}
}

// Tensors the config's model does not use are named in a warning; the fixtures have none.
func TestUnusedTensorsReported(t *testing.T) {
	for _, layout := range []string{"hf", "hf-vl", "mlx-4bit"} {
		var log bytes.Buffer
		if _, err := Convert(context.Background(), Options{In: tiny + layout, Out: filepath.Join(t.TempDir(), "o"), Log: &log}); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(log.String(), "are not used by the model") {
			t.Errorf("%s: %s", layout, log.String())
		}
	}
	d := copyDir(t, tiny+"hf")
	var extra []stEntry
	for l := 8; l < 11; l++ { // the fixture has 8 layers
		for _, n := range []string{"input_layernorm.weight", "post_attention_layernorm.weight"} {
			extra = append(extra, stEntry{fmt.Sprintf("model.layers.%d.%s", l, n), "BF16", []int{128}, make([]byte, 256)})
		}
	}
	writeSafetensors(t, filepath.Join(d, "extra.safetensors"), extra)
	path := filepath.Join(d, "model.safetensors.index.json")
	raw, _ := os.ReadFile(path)
	var idx map[string]any
	json.Unmarshal(raw, &idx)
	for _, e := range extra {
		idx["weight_map"].(map[string]any)[e.name] = "extra.safetensors"
	}
	raw, _ = json.Marshal(idx)
	os.WriteFile(path, raw, 0o644)
	var log bytes.Buffer
	if _, err := Convert(context.Background(), Options{In: d, Out: filepath.Join(t.TempDir(), "o"), Log: &log}); err != nil {
		t.Fatal(err)
	}
	want := "warning: 6 tensors of " + d + " are not used by the model its config.json describes (num_hidden_layers 8) and were not packed: " +
		"model.layers.10.input_layernorm.weight, model.layers.10.post_attention_layernorm.weight, model.layers.8.input_layernorm.weight, " +
		"model.layers.8.post_attention_layernorm.weight, model.layers.9.input_layernorm.weight, and 1 more\n"
	if log.String() != want {
		t.Errorf("log\n%q\nwant\n%q", log.String(), want)
	}
}
