package format

import (
	"math"
	"strings"
	"testing"
)

// Offsets near 2^63 make Offset+Size wrap negative; every range check must refuse them
// (issue 11: they passed Validate and panicked verify, run and requant).
func TestValidateRefusesOverflowingRanges(t *testing.T) {
	const near = math.MaxInt64
	cases := map[string]struct {
		mut  func(m *Manifest)
		want string
	}{
		"dense data":      {func(m *Manifest) { m.Tensors[3].Data.Offset = near &^ (WeightsAlign - 1) }, "outside the file"},
		"dense biases":    {func(m *Manifest) { m.Tensors[0].Biases.Offset = near &^ (WeightsAlign - 1) }, "outside the file"},
		"expert data":     {func(m *Manifest) { m.Experts[0].Projections[1].Data.Offset = near &^ (ExpertAlign - 1) }, "outside the file"},
		"expert scales":   {func(m *Manifest) { m.Experts[0].Projections[0].Scales.Offset = near &^ (ExpertAlign - 1) }, "outside the file"},
		"negative size":   {func(m *Manifest) { m.Weights.Size = -1 }, "non-negative size"},
		"huge stride":     {func(m *Manifest) { m.Experts[0].Stride = 1 << 62 }, "unused bytes"},
		"huge layers":     {func(m *Manifest) { m.Config.NumHiddenLayers = 1 << 40 }, "num_hidden_layers"},
		"zero kv heads":   {func(m *Manifest) { m.Config.NumKeyValueHeads = 0 }, "num_key_value_heads"},
		"zero key heads":  {func(m *Manifest) { m.Config.LinearNumKeyHeads = 0 }, "linear_num_key_heads"},
		"negative hidden": {func(m *Manifest) { m.Config.HiddenSize = -128 }, "hidden_size"},
	}
	for name, c := range cases {
		m := testManifest(t)
		c.mut(m)
		err := Validate(m)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, c.want)
		}
	}
}

// A stride that is exactly what its (huge) projections need can still overflow a layer file's
// size when multiplied by the experts: Validate must refuse it rather than compare a wrapped
// product.
func TestValidateRefusesOverflowingLayerSize(t *testing.T) {
	c := Config{Architecture: ArchQwen35MoE, HiddenSize: 1 << 24, NumHiddenLayers: 1, VocabSize: 64,
		LayerTypes: []string{FullAttention}, NumAttentionHeads: 2, NumKeyValueHeads: 1, HeadDim: 64, RotaryDim: 16,
		LinearNumKeyHeads: 1, LinearNumValueHeads: 1, LinearKeyHeadDim: 64, LinearValueHeadDim: 64, LinearConvKernelDim: 4,
		NumExperts: 1 << 16, NumExpertsPerTok: 4, MoeIntermediateSize: 1 << 24}
	m := manifestFor(t, c)
	err := Validate(m)
	if err == nil || !strings.Contains(err.Error(), "overflows") {
		t.Fatalf("%v, want the layer size overflow named", err)
	}
}

func TestSpanWithin(t *testing.T) {
	for _, c := range []struct {
		s     Span
		limit int64
		want  bool
	}{
		{Span{0, 10, 0}, 10, true},
		{Span{5, 5, 0}, 10, true},
		{Span{5, 6, 0}, 10, false},
		{Span{math.MaxInt64, 1, 0}, 10, false},
		{Span{math.MaxInt64 - 4, 10, 0}, math.MaxInt64, false},
		{Span{1, math.MaxInt64, 0}, math.MaxInt64, false},
		{Span{-1, 1, 0}, 10, false},
		{Span{0, -1, 0}, 10, false},
		{Span{0, 0, 0}, math.MinInt64, false},
		{Span{0, 1, 0}, math.MinInt64, false},
	} {
		if got := c.s.Within(c.limit); got != c.want {
			t.Errorf("%+v within %d: %v, want %v", c.s, c.limit, got, c.want)
		}
	}
}

func TestDataSizeRefusesOverflow(t *testing.T) {
	if _, err := DataSize(DTypeF32, []int{1 << 30, 1 << 30, 1 << 30}, 0); err == nil {
		t.Error("2^90 elements accepted")
	}
	if _, err := GroupParamSize([]int{1 << 62, 1 << 10}, 1); err == nil {
		t.Error("2^72 group parameters accepted")
	}
}
