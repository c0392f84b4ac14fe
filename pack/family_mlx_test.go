package pack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/quant"
)

// mlxOf writes what mlx-lm's conversion makes of a Hugging Face checkpoint of the other
// families: names without a language_model. prefix, every matrix affine-quantised with MLX's
// rule (4 bits, router gates 8 bits, group 64) as .weight/.scales/.biases, each layer's experts
// stacked as mlp.switch_mlp.{gate,up,down}_proj, and the quantization block in config.json with
// a per-module entry for each gate.
func mlxOf(t *testing.T, hf string) string {
	t.Helper()
	ck := openSource(t, hf)
	c := &ck.config
	var out []stEntry
	quantised := func(name string, src []byte, dtype string, lead, rows, cols, bits int) []stEntry {
		var w, s, b []byte
		n := len(src) / lead
		for e := 0; e < lead; e++ {
			enc, err := quantizeFloat(quant.RuleMLX, src[e*n:(e+1)*n], dtype, rows, cols, bits, 64, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			w, s, b = append(w, enc.data...), append(s, enc.scales...), append(b, enc.biases...)
		}
		shape := func(last int) []int {
			if lead == 1 {
				return []int{rows, last}
			}
			return []int{lead, rows, last}
		}
		return []stEntry{{name + ".weight", "U32", shape(cols * bits / 32), w},
			{name + ".scales", "BF16", shape(cols / 64), s}, {name + ".biases", "BF16", shape(cols / 64), b}}
	}
	q := map[string]any{"group_size": 64, "bits": 4}
	for _, spec := range format.Schema(c) {
		src := ck.tensors[spec.Name]
		if !spec.Matrix {
			out = append(out, stEntry{spec.Name, src.dtype, src.shape, src.data})
			continue
		}
		bits := 4
		if spec.Gate {
			bits = 8
			q[spec.Name[:len(spec.Name)-len(".weight")]] = map[string]any{"group_size": 64, "bits": 8}
		}
		out = append(out, quantised(spec.Name[:len(spec.Name)-len(".weight")], src.data, src.dtype, 1, spec.Shape[0], spec.Shape[1], bits)...)
	}
	for l := 0; l < c.NumHiddenLayers; l++ {
		if c.Dense(l) {
			continue
		}
		for _, proj := range format.ExpertProjections {
			shape, _ := format.ExpertShape(c, proj)
			var stacked []byte
			var dtype string
			for e := 0; e < c.NumExperts; e++ {
				src := ck.tensors[fmt.Sprintf("%smlp.experts.%d.%s.weight", format.LayerPrefix(l), e, proj)]
				stacked, dtype = append(stacked, src.data...), src.dtype
			}
			out = append(out, quantised(format.LayerPrefix(l)+"mlp.switch_mlp."+proj, stacked, dtype, c.NumExperts, shape[0], shape[1], 4)...)
		}
	}
	dir := filepath.Join(t.TempDir(), "mlx")
	os.MkdirAll(dir, 0o755)
	writeSafetensors(t, filepath.Join(dir, "model.safetensors"), out)
	var cfg map[string]any
	json.Unmarshal(ck.rawConfig, &cfg)
	cfg["quantization"] = q
	raw, _ := json.Marshal(cfg)
	os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644)
	return dir
}

// TestFamilyMLXLayout: an mlx-community conversion of each family is read as MLX (copied, not
// requantised) and packs to exactly the bytes of packing the bf16 checkpoint with --rule mlx
// (MLX's own rule, bit for bit): every dense tensor, the 8-bit router gates, every expert block.
func TestFamilyMLXLayout(t *testing.T) {
	for _, fam := range []string{"qwen3_moe", "glm4_moe"} {
		t.Run(fam, func(t *testing.T) {
			hf := "../testdata/arch/" + fam + "/hf"
			mlx := convert(t, mlxOf(t, hf), Options{})
			ref := convert(t, hf, Options{Bits: 4, Rule: "mlx"})
			if mlx.m.Source.Layout != LayoutMLX || mlx.m.Source.NormShifted {
				t.Errorf("source %+v, want layout mlx without shifted norms", mlx.m.Source)
			}
			for _, want := range ref.m.Tensors {
				got, err := mlx.m.Tensor(want.Name)
				if err != nil {
					t.Fatal(err)
				}
				if got.DType != want.DType || got.Bits != want.Bits || got.GroupSize != want.GroupSize {
					t.Fatalf("%s: %s %d-bit group %d, want %s %d-bit group %d", want.Name, got.DType, got.Bits, got.GroupSize, want.DType, want.Bits, want.GroupSize)
				}
				for i, ws := range want.Spans() {
					if !bytes.Equal(mlx.span(got.Spans()[i].Span), ref.span(ws.Span)) {
						t.Fatalf("%s %s differs", want.Name, ws.Part)
					}
				}
			}
			gs, rs := &mlx.m.Experts[0], &ref.m.Experts[0]
			if gs.Stride != rs.Stride || gs.Bits != 4 {
				t.Fatalf("expert set: %d-bit stride %d, want 4-bit stride %d", gs.Bits, gs.Stride, rs.Stride)
			}
			for l := range rs.Layers {
				if !slices.Equal(gs.Layers[l].CRC32C, rs.Layers[l].CRC32C) {
					t.Fatalf("layer %d experts differ", l)
				}
			}
		})
	}
}
