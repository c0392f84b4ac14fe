package pack

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/quant"
)

const tiny = "../testdata/tiny/"

// packed is a converted model opened for inspection.
type packed struct {
	dir     string
	m       *format.Manifest
	weights []byte
}

func convert(t *testing.T, in string, o Options) *packed {
	t.Helper()
	o.In = in
	if o.Out == "" {
		o.Out = filepath.Join(t.TempDir(), "out")
	}
	if _, err := Convert(context.Background(), o); err != nil {
		t.Fatalf("convert %s: %v", in, err)
	}
	m, err := format.Open(o.Out)
	if err != nil {
		t.Fatalf("open packed %s: %v", in, err)
	}
	w, err := os.ReadFile(filepath.Join(o.Out, format.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	return &packed{dir: o.Out, m: m, weights: w}
}

func (p *packed) span(s format.Span) []byte { return p.weights[s.Offset:s.End()] }

func (p *packed) expert(t *testing.T, set *format.ExpertSet, l, e int) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join(p.dir, set.Dir, set.Layers[l].File))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, set.Stride)
	if _, err := f.ReadAt(buf, int64(e)*set.Stride); err != nil {
		t.Fatal(err)
	}
	if got := format.CRC32C(buf); got != set.Layers[l].CRC32C[e] {
		t.Fatalf("layer %d expert %d: crc %08x, manifest %08x", l, e, got, set.Layers[l].CRC32C[e])
	}
	return buf
}

func openSource(t *testing.T, dir string) *checkpoint {
	t.Helper()
	ck, err := openCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ck.Close)
	return ck
}

func TestEachLayoutPacks(t *testing.T) {
	for _, l := range []struct{ dir, layout string }{{"hf", LayoutHF}, {"hf-vl", LayoutHFVL}, {"mlx-4bit", LayoutMLX}} {
		t.Run(l.dir, func(t *testing.T) {
			p := convert(t, tiny+l.dir, Options{})
			if p.m.Source.Layout != l.layout {
				t.Errorf("layout %q, want %q", p.m.Source.Layout, l.layout)
			}
			if got := len(p.m.Tensors); got != len(format.Schema(&p.m.Config)) {
				t.Errorf("%d tensors", got)
			}
			for _, f := range []string{"tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "config.json"} {
				if _, err := os.Stat(filepath.Join(p.dir, f)); err != nil {
					t.Errorf("side file: %v", err)
				}
			}
			entries, _ := os.ReadDir(filepath.Dir(p.dir))
			if len(entries) != 1 {
				t.Errorf("output parent holds %d entries, want only the pack (no temporary leftovers)", len(entries))
			}
		})
	}
}

// The three layouts hold the same weights: quantising hf/hf-vl with MLX's rule must reproduce
// the mlx-community experts byte for byte, and hf and hf-vl packs must be identical.
func TestLayoutsAgree(t *testing.T) {
	hf := convert(t, tiny+"hf", Options{Rule: "mlx"})
	vl := convert(t, tiny+"hf-vl", Options{Rule: "mlx"})
	mlx := convert(t, tiny+"mlx-4bit", Options{})
	if !bytes.Equal(hf.weights, vl.weights) {
		t.Error("hf and hf-vl model_weights.bin differ")
	}
	for l := range hf.m.Experts[0].Layers {
		a, b, c := hf.m.Experts[0].Layers[l], vl.m.Experts[0].Layers[l], mlx.m.Experts[0].Layers[l]
		for e := range a.CRC32C {
			if a.CRC32C[e] != b.CRC32C[e] || a.CRC32C[e] != c.CRC32C[e] {
				t.Fatalf("layer %d expert %d differs between layouts (hf %08x, hf-vl %08x, mlx %08x)", l, e, a.CRC32C[e], b.CRC32C[e], c.CRC32C[e])
			}
		}
	}
}

func TestMLXDenseBytesEqual(t *testing.T) {
	p := convert(t, tiny+"mlx-4bit", Options{})
	ck := openSource(t, tiny+"mlx-4bit")
	for _, ten := range p.m.Tensors {
		src := ck.tensors[ten.Name]
		if !bytes.Equal(p.span(ten.Data), src.data) {
			t.Errorf("%s: data differs from source %s", ten.Name, src.orig)
		}
		if ten.Quantized() {
			base := strings.TrimSuffix(ten.Name, ".weight")
			if !bytes.Equal(p.span(*ten.Scales), ck.tensors[base+".scales"].data) || !bytes.Equal(p.span(*ten.Biases), ck.tensors[base+".biases"].data) {
				t.Errorf("%s: scales/biases differ from source", ten.Name)
			}
		}
	}
}

// dequant returns the float32 values of a quantised matrix given its three byte ranges.
func dequant(t *testing.T, data, scales, biases []byte, rows, cols, bits, group int) []float32 {
	t.Helper()
	words := make([]uint32, len(data)/4)
	sc := make([]uint16, len(scales)/2)
	bi := make([]uint16, len(biases)/2)
	quant.DecodeUint32s(data, words)
	quant.DecodeUint16s(scales, sc)
	quant.DecodeUint16s(biases, bi)
	out := make([]float32, rows*cols)
	wpr, gpr := cols*bits/32, cols/group
	for r := 0; r < rows; r++ {
		if err := quant.DequantizeRow(words[r*wpr:(r+1)*wpr], sc[r*gpr:(r+1)*gpr], bi[r*gpr:(r+1)*gpr], bits, group, out[r*cols:(r+1)*cols]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestMLXExpertsDequantiseExactly(t *testing.T) {
	p := convert(t, tiny+"mlx-4bit", Options{})
	ck := openSource(t, tiny+"mlx-4bit")
	set := &p.m.Experts[0]
	E := p.m.Config.NumExperts
	for l := range set.Layers {
		for e := 0; e < E; e++ {
			blk := p.expert(t, set, l, e)
			for _, pr := range set.Projections {
				pre := format.LayerPrefix(l) + "mlp.switch_mlp." + pr.Name + "."
				r, c := pr.Shape[0], pr.Shape[1]
				got := dequant(t, blk[pr.Data.Offset:pr.Data.End()], blk[pr.Scales.Offset:pr.Scales.End()], blk[pr.Biases.Offset:pr.Biases.End()], r, c, pr.Bits, pr.GroupSize)
				want := dequant(t, sliceExpert(ck.tensors[pre+"weight"].data, E, e), sliceExpert(ck.tensors[pre+"scales"].data, E, e), sliceExpert(ck.tensors[pre+"biases"].data, E, e), r, c, 4, 64)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("layer %d expert %d %s element %d: %v, source %v", l, e, pr.Name, i, got[i], want[i])
					}
				}
			}
		}
	}
}

func decodeFloats(t *testing.T, dtype string, b []byte) []float32 {
	t.Helper()
	n, _ := quant.ElemSize(dtype)
	out := make([]float32, len(b)/n)
	if err := quant.DecodeFloats(dtype, b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// hfExpert returns the bf16 bytes of one expert projection of the hf fixture.
func hfExpert(ck *checkpoint, l, e int, proj string) []byte {
	return ck.tensors[format.LayerPrefix(l)+"mlp.experts."+strconv.Itoa(e)+"."+proj+".weight"].data
}

// Every element of a 4-bit pack of a bf16 source is within half a quantisation step of the
// source value; bf16 rounding of the group's scale and bias may add at most one bf16 ulp of each.
func TestBF16To4BitWithinHalfStep(t *testing.T) {
	p := convert(t, tiny+"hf", Options{Bits: 4})
	ck := openSource(t, tiny+"hf")
	check := func(name string, src []float32, data, scales, biases []byte, rows, cols, bits, group int) {
		got := dequant(t, data, scales, biases, rows, cols, bits, group)
		sc := decodeFloats(t, "BF16", scales)
		bi := decodeFloats(t, "BF16", biases)
		for i := range got {
			g := i/cols*(cols/group) + i%cols/group
			s, b := float64(sc[g]), float64(bi[g])
			bound := math.Abs(s)/2 + 0x1p-8*(math.Abs(b)+float64(int(1)<<bits)*math.Abs(s)) + 1e-6
			if d := math.Abs(float64(got[i]) - float64(src[i])); d > bound {
				t.Fatalf("%s element %d: |%v - %v| = %g exceeds half a step (%g, bound %g)", name, i, got[i], src[i], d, s/2, bound)
			}
		}
	}
	for _, ten := range p.m.Tensors {
		if !ten.Quantized() {
			continue
		}
		src := decodeFloats(t, ck.tensors[ten.Name].dtype, ck.tensors[ten.Name].data)
		check(ten.Name, src, p.span(ten.Data), p.span(*ten.Scales), p.span(*ten.Biases), ten.Shape[0], ten.Shape[1], ten.Bits, ten.GroupSize)
	}
	set := &p.m.Experts[0]
	for l := range set.Layers {
		for e := 0; e < p.m.Config.NumExperts; e++ {
			blk := p.expert(t, set, l, e)
			for _, pr := range set.Projections {
				src := decodeFloats(t, "BF16", hfExpert(ck, l, e, pr.Name))
				check(pr.Name, src, blk[pr.Data.Offset:pr.Data.End()], blk[pr.Scales.Offset:pr.Scales.End()], blk[pr.Biases.Offset:pr.Biases.End()], pr.Shape[0], pr.Shape[1], pr.Bits, pr.GroupSize)
			}
		}
	}
}

func TestBits16IsLossless(t *testing.T) {
	p := convert(t, tiny+"hf", Options{Bits: 16})
	ck := openSource(t, tiny+"hf")
	for _, ten := range p.m.Tensors {
		src := ck.tensors[ten.Name]
		got := p.span(ten.Data)
		spec := specOf(&p.m.Config, ten.Name)
		if spec.NormShift {
			want := decodeFloats(t, src.dtype, src.data)
			g := decodeFloats(t, ten.DType, got)
			for i := range want {
				if g[i] != want[i]+1 {
					t.Fatalf("%s[%d] = %v, want 1+%v exactly", ten.Name, i, g[i], want[i])
				}
			}
			continue
		}
		if ten.Quantized() || !bytes.Equal(got, src.data) {
			t.Errorf("%s: not a byte copy of the bf16 source (dtype %s)", ten.Name, ten.DType)
		}
	}
	set := &p.m.Experts[0]
	if set.Bits != 16 {
		t.Fatalf("expert bits %d", set.Bits)
	}
	for l := range set.Layers {
		for e := 0; e < p.m.Config.NumExperts; e++ {
			blk := p.expert(t, set, l, e)
			for _, pr := range set.Projections {
				if !bytes.Equal(blk[pr.Data.Offset:pr.Data.End()], hfExpert(ck, l, e, pr.Name)) {
					t.Fatalf("layer %d expert %d %s differs from the bf16 source", l, e, pr.Name)
				}
			}
		}
	}
}

func specOf(c *format.Config, name string) format.TensorSpec {
	for _, s := range format.Schema(c) {
		if s.Name == name {
			return s
		}
	}
	return format.TensorSpec{}
}

func TestDenseBitsAndGates(t *testing.T) {
	p := convert(t, tiny+"hf", Options{Bits: 2})
	if p.m.Experts[0].Bits != 2 {
		t.Errorf("expert bits %d, want 2", p.m.Experts[0].Bits)
	}
	for _, ten := range p.m.Tensors {
		spec := specOf(&p.m.Config, ten.Name)
		switch {
		case spec.Gate && ten.Bits != 8:
			t.Errorf("%s: %d bits, gates stay at 8", ten.Name, ten.Bits)
		case spec.Matrix && !spec.Gate && ten.Bits != 4:
			t.Errorf("%s: %d bits, want dense 4", ten.Name, ten.Bits)
		}
	}
	for _, ten := range p.m.Tensors {
		if ten.Quantized() && ten.Rule != "minmax" {
			t.Errorf("%s: rule %q, want the default minmax recorded", ten.Name, ten.Rule)
		}
	}
	for _, pr := range p.m.Experts[0].Projections {
		if pr.Rule != "minmax" {
			t.Errorf("expert %s: rule %q, want minmax", pr.Name, pr.Rule)
		}
	}
	mlx := convert(t, tiny+"mlx-4bit", Options{})
	for _, pr := range mlx.m.Experts[0].Projections {
		if pr.Rule != "" {
			t.Errorf("copied mlx expert %s: rule %q, want none (unknown provenance)", pr.Name, pr.Rule)
		}
	}
	_ = binary.LittleEndian
}
