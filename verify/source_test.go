package verify

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// copySource copies a fixture checkpoint so a test can alter it.
func copySource(t *testing.T, layout string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), layout)
	if out, err := exec.Command("cp", "-r", tiny+layout, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return dst
}

// tensorBytes returns the shard and the absolute byte range of a tensor in a checkpoint.
func tensorBytes(t *testing.T, dir, name string) (string, int64, int64) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "model.safetensors.index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	shard := filepath.Join(dir, idx.WeightMap[name])
	data, err := os.ReadFile(shard)
	if err != nil {
		t.Fatal(err)
	}
	n := int64(binary.LittleEndian.Uint64(data))
	var hdr map[string]struct {
		Offsets [2]int64 `json:"data_offsets"`
	}
	if err := json.Unmarshal(data[8:8+n], &hdr); err != nil {
		t.Fatal(err)
	}
	e, ok := hdr[name]
	if !ok {
		t.Fatalf("%s not in %s", name, shard)
	}
	return shard, 8 + n + e.Offsets[0], 8 + n + e.Offsets[1]
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// An altered source tensor is found and named, whether the pack copied it (exact), shifted it
// (1+w, exact) or quantised it (bound); experts are named by layer, expert and projection.
func TestSourceAltered(t *testing.T) {
	big := []byte{0x80, 0x40} // bf16 4.0: far outside any tiny weight's quantisation bound
	cases := []struct {
		layout, tensor string
		at             int64 // byte offset inside the tensor
		val            []byte
		want           Problem
		mode           string
	}{
		{"hf", "model.layers.2.linear_attn.in_proj_qkv.weight", 130, big,
			Problem{Tensor: "model.layers.2.linear_attn.in_proj_qkv.weight"}, "bound"},
		{"hf", "model.layers.1.input_layernorm.weight", 6, big,
			Problem{Tensor: "model.layers.1.input_layernorm.weight"}, "exact"},
		{"hf", "model.layers.4.mlp.experts.7.down_proj.weight", 64, big,
			Problem{Layer: intp(4), Expert: intp(7), Projection: "down_proj"}, "bound"},
		// Fused gate_up [E, 2I, H]: expert 3's block starts at 3*2*64*128*2 bytes; gate rows first.
		{"hf-vl", "model.language_model.layers.6.mlp.experts.gate_up_proj", 3*2*64*128*2 + 10, big,
			Problem{Layer: intp(6), Expert: intp(3), Projection: "gate_proj"}, "bound"},
		{"hf-vl", "model.language_model.layers.6.mlp.experts.gate_up_proj", 3*2*64*128*2 + 64*128*2 + 10, big,
			Problem{Layer: intp(6), Expert: intp(3), Projection: "up_proj"}, "bound"},
		{"mlx-4bit", "language_model.model.layers.3.self_attn.q_proj.weight", 17, []byte{0x5a},
			Problem{Tensor: "model.layers.3.self_attn.q_proj.weight"}, "exact"},
		// Stacked scales [E, rows, cols/64] bf16: expert 9 of 16.
		{"mlx-4bit", "language_model.model.layers.2.mlp.switch_mlp.up_proj.scales", 9*64*2*2 + 4, []byte{0x12, 0x34},
			Problem{Layer: intp(2), Expert: intp(9), Projection: "up_proj"}, "exact"},
	}
	for _, c := range cases {
		t.Run(c.layout+"/"+c.tensor, func(t *testing.T) {
			src := copySource(t, c.layout)
			shard, start, end := tensorBytes(t, src, c.tensor)
			if start+c.at+int64(len(c.val)) > end {
				t.Fatalf("offset %d outside %s (%d bytes)", c.at, c.tensor, end-start)
			}
			writeAt(t, shard, start+c.at, c.val)
			r := run(t, Options{Model: cleanPack(t, c.layout), Source: src})
			p := wantProblem(t, r, "source", c.want)
			if c.want.Tensor != "" && !strings.Contains(p.Message, c.want.Tensor) {
				t.Errorf("message does not name the tensor: %s", p.Message)
			}
			var failed []KindStat
			for _, k := range r.Source.Kinds {
				if k.Failed > 0 {
					failed = append(failed, k)
				}
			}
			if len(failed) != 1 || failed[0].Mode != c.mode {
				t.Errorf("want one failed %s kind, got %+v", c.mode, failed)
			}
		})
	}
}

// A pack compared with a different layout of the same weights passes: mlx-community quantised
// the hf weights with MLX's rule, so the mlx pack is within the bound of the bf16 source.
func TestSourceCrossLayout(t *testing.T) {
	r := run(t, Options{Model: cleanPack(t, "mlx-4bit"), Source: tiny + "hf"})
	if !r.OK {
		t.Fatalf("%v", r.Problems)
	}
}
