package format

import (
	"os"
	"strings"
	"testing"
)

// testManifest builds a valid manifest for the tiny fixture's config with a synthetic layout.
func testManifest(tb testing.TB) *Manifest {
	tb.Helper()
	return manifestOf(tb, "../testdata/tiny/hf/config.json")
}

// manifestOf builds a valid manifest for a checkpoint's config with a synthetic layout.
func manifestOf(tb testing.TB, path string) *Manifest {
	tb.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := ParseConfig("config.json", raw, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return manifestFor(tb, cfg)
}

// manifestFor lays out a consistent manifest (4-bit matrices, group 64) for cfg.
func manifestFor(tb testing.TB, cfg Config) *Manifest {
	tb.Helper()
	m := &Manifest{Format: "fmoe", Version: Version, CreatedBy: "test", Config: cfg,
		Source: Source{Layout: "hf", Architecture: cfg.Architecture}}
	var off int64
	place := func(size int64) Span {
		off = (off + WeightsAlign - 1) / WeightsAlign * WeightsAlign
		s := Span{Offset: off, Size: size}
		off += size
		return s
	}
	for _, s := range Schema(&cfg) {
		t := Tensor{Name: s.Name, Shape: s.Shape, DType: DTypeBF16}
		if s.Matrix {
			t.DType, t.Bits, t.GroupSize = DTypeU32, 4, 64
		}
		size, err := DataSize(t.DType, t.Shape, t.Bits)
		if err != nil {
			tb.Fatal(err)
		}
		t.Data = place(size)
		if s.Matrix {
			gs, _ := GroupParamSize(t.Shape, 64)
			sc, bi := place(gs), place(gs)
			t.Scales, t.Biases = &sc, &bi
		}
		m.Tensors = append(m.Tensors, t)
	}
	m.Weights = WeightsFile{File: WeightsName, Size: off, Align: WeightsAlign}
	set := ExpertSet{Bits: 4, Dir: ExpertsDir, Align: ExpertAlign}
	var eoff int64
	for _, p := range ExpertProjections {
		shape, _ := ExpertShape(&cfg, p)
		t := Tensor{Name: p, DType: DTypeU32, Shape: shape, Bits: 4, GroupSize: 64}
		size, _ := DataSize(t.DType, shape, 4)
		gs, _ := GroupParamSize(shape, 64)
		t.Data = Span{Offset: eoff, Size: size}
		eoff += 4096 * ((size + 4095) / 4096)
		sc := Span{Offset: eoff, Size: gs}
		eoff += 4096 * ((gs + 4095) / 4096)
		bi := Span{Offset: eoff, Size: gs}
		eoff += 4096 * ((gs + 4095) / 4096)
		t.Scales, t.Biases = &sc, &bi
		set.Projections = append(set.Projections, t)
	}
	set.Stride = eoff
	for l := 0; l < cfg.NumHiddenLayers; l++ {
		n := cfg.LayerExperts(l) // 0 for a dense layer
		set.Layers = append(set.Layers, ExpertLayer{File: LayerFileName(l), Size: int64(n) * eoff, CRC32C: make([]uint32, n)})
	}
	m.Experts = []ExpertSet{set}
	return m
}

func TestRoundTrip(t *testing.T) {
	m := testManifest(t)
	if err := Validate(m); err != nil {
		t.Fatal(err)
	}
	data, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(got); err != nil {
		t.Fatal(err)
	}
	again, _ := Encode(got)
	if string(again) != string(data) {
		t.Error("encode(decode(x)) != x")
	}
}

// Every single-byte change anywhere in the manifest is caught.
func TestEveryByteFlipIsCaught(t *testing.T) {
	data, err := Encode(testManifest(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		// Every byte with one flip; every 7th with two more patterns (time: the manifest is 40 KB).
		flips := []byte{0x01}
		if i%7 == 0 {
			flips = append(flips, 0x80, 0xff)
		}
		for _, x := range flips {
			bad := append([]byte(nil), data...)
			bad[i] ^= x
			if _, err := Decode(bad); err == nil {
				t.Fatalf("flipping byte %d by %#x was not caught", i, x)
			}
		}
	}
}

func TestNewerVersionRefused(t *testing.T) {
	m := testManifest(t)
	m.Version = Version + 1
	data, _ := Encode(m)
	_, err := Decode(data)
	if err == nil || !strings.Contains(err.Error(), "version 2") || !strings.Contains(err.Error(), "upgrade") {
		t.Fatalf("got %v, want a refusal naming the version", err)
	}
}

func TestValidateCatchesLayoutErrors(t *testing.T) {
	cases := map[string]func(m *Manifest){
		"outside":     func(m *Manifest) { m.Tensors[3].Data.Offset = m.Weights.Size },
		"overlap":     func(m *Manifest) { m.Tensors[1].Data.Offset = m.Tensors[0].Data.Offset },
		"unaligned":   func(m *Manifest) { m.Tensors[2].Data.Offset++ },
		"size":        func(m *Manifest) { m.Tensors[2].Data.Size-- },
		"shape":       func(m *Manifest) { m.Tensors[0].Shape = []int{1, 2} },
		"missing":     func(m *Manifest) { m.Tensors = m.Tensors[1:] },
		"stride":      func(m *Manifest) { m.Experts[0].Stride++ },
		"crc count":   func(m *Manifest) { m.Experts[0].Layers[2].CRC32C = m.Experts[0].Layers[2].CRC32C[1:] },
		"layer file":  func(m *Manifest) { m.Experts[0].Layers[2].File = "layer_9.bin" },
		"layer size":  func(m *Manifest) { m.Experts[0].Layers[0].Size-- },
		"bits":        func(m *Manifest) { m.Experts[0].Bits = 3 },
		"layer types": func(m *Manifest) { m.Config.LayerTypes[0] = "mamba" },
	}
	for name, mut := range cases {
		m := testManifest(t)
		mut(m)
		if err := Validate(m); err == nil {
			t.Errorf("%s: not caught", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestConfigForms(t *testing.T) {
	for _, dir := range []string{"hf", "hf-vl", "mlx-4bit"} {
		raw, err := os.ReadFile("../testdata/tiny/" + dir + "/config.json")
		if err != nil {
			t.Fatal(err)
		}
		c, err := ParseConfig(dir, raw, nil)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if c.HiddenSize != 128 || c.RotaryDim != 16 || c.RopeTheta != 1e7 || c.NumExpertsPerTok != 4 || c.LayerTypes[3] != FullAttention || c.ConvDim() != 256 {
			t.Errorf("%s: %+v", dir, c)
		}
	}
	c, err := ParseConfig("x", []byte(`{"model_type":"qwen3_5_moe_text","hidden_size":8,"num_hidden_layers":8,"vocab_size":4,
		"num_attention_heads":2,"num_key_value_heads":1,"head_dim":4,"linear_num_key_heads":1,"linear_num_value_heads":2,
		"linear_key_head_dim":4,"linear_value_head_dim":4,"linear_conv_kernel_dim":4,"num_experts":4,"num_experts_per_tok":2,
		"moe_intermediate_size":4,"full_attention_interval":4,"eos_token_id":[1,2],"partial_rotary_factor":0.5}`), []byte(`{"eos_token_id":3}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.LayerTypes[3] != FullAttention || c.LayerTypes[4] != LinearAttention || len(c.EOSTokenIDs) != 3 || c.RotaryDim != 2 {
		t.Errorf("interval config: %+v", c)
	}
}
