package quant

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
)

const (
	hfDir  = "../testdata/tiny/hf"
	mlxDir = "../testdata/tiny/mlx-4bit"
)

// mlxBits reads the per-tensor bit widths from the mlx config's
// "quantization" block, falling back to its top-level bits.
func mlxBits(t *testing.T) (def, group int, per map[string]int) {
	t.Helper()
	raw, err := os.ReadFile(mlxDir + "/config.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Quantization map[string]json.RawMessage `json:"quantization"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	per = map[string]int{}
	for k, v := range cfg.Quantization {
		switch k {
		case "bits":
			json.Unmarshal(v, &def)
		case "group_size":
			json.Unmarshal(v, &group)
		case "mode":
		default:
			var q struct {
				Bits      int `json:"bits"`
				GroupSize int `json:"group_size"`
			}
			if err := json.Unmarshal(v, &q); err != nil || q.Bits == 0 {
				t.Fatalf("config quantization.%s: %s", k, v)
			}
			if q.GroupSize != 64 {
				t.Fatalf("config quantization.%s: group %d, want 64", k, q.GroupSize)
			}
			per[k] = q.Bits
		}
	}
	return def, group, per
}

// TestFixtureMLX4Bit re-quantises every quantised tensor of the tiny hf
// checkpoint and requires byte-identical weight, scales and biases against
// testdata/tiny/mlx-4bit.
func TestFixtureMLX4Bit(t *testing.T) {
	hf := readSafetensorsDir(t, hfDir)
	mlx := readSafetensorsDir(t, mlxDir)
	defBits, group, perBits := mlxBits(t)
	if defBits != 4 || group != 64 {
		t.Fatalf("fixture config: bits %d group %d, want 4 and 64", defBits, group)
	}

	var prefixes []string
	for name := range mlx {
		if p, ok := strings.CutSuffix(name, ".scales"); ok {
			prefixes = append(prefixes, p)
		}
	}
	sort.Strings(prefixes)

	matched := map[string]int{} // bits/kind -> tensors
	var mats int
	for _, p := range prefixes {
		bits := defBits
		if b, ok := perBits[p]; ok {
			bits = b
		}
		// The config must agree with the brief: router gates are 8-bit.
		wantBits := 4
		if strings.HasSuffix(p, ".mlp.gate") || strings.HasSuffix(p, ".mlp.shared_expert_gate") {
			wantBits = 8
		}
		if bits != wantBits {
			t.Errorf("%s: config says %d bits, want %d", p, bits, wantBits)
		}
		w, s, b := mlx[p+".weight"], mlx[p+".scales"], mlx[p+".biases"]
		if w.DType != "U32" || s.DType != "BF16" || b.DType != "BF16" {
			t.Fatalf("%s: dtypes %s/%s/%s", p, w.DType, s.DType, b.DType)
		}
		hfName := strings.TrimPrefix(p, "language_model.")
		if layer, proj, ok := strings.Cut(hfName, ".mlp.switch_mlp."); ok {
			// Stacked experts [E, out, words]: expert e is hf's experts.e.
			experts, rows := w.Shape[0], w.Shape[1]
			cols := w.Shape[2] * 32 / bits
			wBytes, gBytes := len(w.Data)/experts, len(s.Data)/experts
			for e := range experts {
				name := fmt.Sprintf("%s.mlp.experts.%d.%s.weight", layer, e, proj)
				got := quantizeHF(t, hf, name, rows, cols, bits, group)
				compare(t, fmt.Sprintf("%s[%d]", p, e), got,
					w.Data[e*wBytes:(e+1)*wBytes], s.Data[e*gBytes:(e+1)*gBytes], b.Data[e*gBytes:(e+1)*gBytes])
				mats++
			}
			matched[fmt.Sprintf("%d-bit stacked expert tensors", bits)]++
			continue
		}
		rows, cols := w.Shape[0], w.Shape[1]*32/bits
		got := quantizeHF(t, hf, hfName+".weight", rows, cols, bits, group)
		compare(t, p, got, w.Data, s.Data, b.Data)
		matched[fmt.Sprintf("%d-bit 2-D tensors", bits)]++
		mats++
	}
	if t.Failed() {
		return
	}
	var keys []string
	for k := range matched {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("byte-identical: %d %s", matched[k], k)
	}
	t.Logf("byte-identical: %d quantised tensors, %d matrices (each expert counted once)", len(prefixes), mats)
	if len(prefixes) == 0 {
		t.Fatal("no quantised tensors found")
	}
}

func quantizeHF(t *testing.T, hf map[string]stTensor, name string, rows, cols, bits, group int) *Matrix {
	t.Helper()
	src, ok := hf[name]
	if !ok {
		t.Fatalf("hf tensor %s missing", name)
	}
	if len(src.Shape) != 2 || src.Shape[0] != rows || src.Shape[1] != cols {
		t.Fatalf("%s: shape %v, mlx implies [%d %d]", name, src.Shape, rows, cols)
	}
	m, err := NewMatrix(rows, cols, bits, group)
	if err != nil {
		t.Fatal(err)
	}
	if err := Quantize(m, src.floats(t)); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

func compare(t *testing.T, name string, m *Matrix, w, s, b []byte) {
	t.Helper()
	gw := make([]byte, 4*len(m.Weight))
	gs := make([]byte, 2*len(m.Scales))
	gb := make([]byte, 2*len(m.Biases))
	if err := EncodeUint32s(m.Weight, gw); err != nil {
		t.Fatal(err)
	}
	if err := EncodeUint16s(m.Scales, gs); err != nil {
		t.Fatal(err)
	}
	if err := EncodeUint16s(m.Biases, gb); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what      string
		got, want []byte
	}{{"weight", gw, w}, {"scales", gs, s}, {"biases", gb, b}} {
		if !bytes.Equal(c.got, c.want) {
			i := 0
			for i < len(c.got) && i < len(c.want) && c.got[i] == c.want[i] {
				i++
			}
			t.Errorf("%s: %s differs (len %d vs %d, first difference at byte %d)", name, c.what, len(c.got), len(c.want), i)
		}
	}
}
