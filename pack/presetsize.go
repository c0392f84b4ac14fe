package pack

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/fmoe/fmoe/format"
)

// PresetSize is what a preset's model costs to store and to run, computed from the config synth
// writes for it with the packer's own expert layout (expertSetLayout), so that the figures in
// docs/families.md are the bytes a pack has.
type PresetSize struct {
	Name          string
	Hidden, Inter int
	ExpertLayers  int   // layers with routed experts
	Experts, K    int   // routed experts a layer, picked a token
	Expert4       int64 // one expert block at 4 bits (group 64)
	Expert2       int64 // at 2 bits
	Token4        int64 // expert bytes a token reads at 4 bits: K × ExpertLayers × Expert4
	Token2        int64
	AllExperts4   int64 // every expert of every layer at 4 bits: the disk the experts take
	// KV cache bytes per token, all layers, as fmoe stores it (float32): for DeepSeek-V3 the
	// latent and the shared rotary key; KVExpanded is the up-projected per-head keys and
	// values a cache without MLA would keep, in bf16 (what the ~4 MB figure counts).
	KVBytes, KVExpanded int64
}

// SizeOf computes a preset's PresetSize.
func SizeOf(p *Preset) (PresetSize, error) {
	raw, _ := json.Marshal(synthConfig(p, p.Layers, false))
	c, err := format.ParseConfig(p.Name, raw, nil)
	if err != nil {
		return PresetSize{}, err
	}
	s := PresetSize{Name: p.Name, Hidden: c.HiddenSize, Inter: c.MoeIntermediateSize, Experts: c.NumExperts, K: c.NumExpertsPerTok}
	for l := 0; l < c.NumHiddenLayers; l++ {
		if c.LayerExperts(l) > 0 {
			s.ExpertLayers++
		}
	}
	for _, b := range []struct {
		bits int
		dst  *int64
	}{{4, &s.Expert4}, {2, &s.Expert2}} {
		set, err := expertSetLayout(&c, b.bits, 64)
		if err != nil {
			return s, err
		}
		*b.dst = set.Stride
	}
	n := int64(s.K * s.ExpertLayers)
	s.Token4, s.Token2 = n*s.Expert4, n*s.Expert2
	s.AllExperts4 = int64(s.Experts*s.ExpertLayers) * s.Expert4
	s.KVBytes, s.KVExpanded = kvPerToken(&c)
	return s, nil
}

// kvPerToken is the KV cache per position of every layer: fmoe's float32 cache, and the
// per-head keys and values in bf16. GatedDeltaNet layers keep a fixed state, nothing per token.
func kvPerToken(c *format.Config) (cached, expanded int64) {
	for l := 0; l < c.NumHiddenLayers; l++ {
		if len(c.LayerTypes) > l && c.LayerTypes[l] == format.LinearAttention {
			continue
		}
		if m := c.MLA; m != nil {
			cached += int64(m.KVLoraRank+m.QKRopeHeadDim) * 4
			expanded += int64(c.NumAttentionHeads*(m.QKNopeHeadDim+m.QKRopeHeadDim+m.VHeadDim)) * 2
			continue
		}
		kv := int64(2 * c.NumKeyValueHeads * c.HeadDim)
		cached += kv * 4
		expanded += kv * 2
	}
	return cached, expanded
}

// WriteSizeTable writes the presets' sizes as the Markdown table docs/families.md holds
// (`fmoe-pack synth --list`).
func WriteSizeTable(w io.Writer, real bool) error {
	fmt.Fprintln(w, "| preset | H | I | layers with experts | experts | K | expert at 4 bits | per token at 4 bits | expert at 2 bits | per token at 2 bits | all experts at 4 bits | KV cache per token (fmoe, f32) | per-head K/V per token (bf16) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for i := range Presets {
		p := &Presets[i]
		if real && strings.HasSuffix(p.Name, "tiny") { // the test shapes
			continue
		}
		s, err := SizeOf(p)
		if err != nil {
			return fmt.Errorf("preset %s: %w", p.Name, err)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %d | %s B | %s | %s B | %s | %s | %s | %s |\n", s.Name, s.Hidden, s.Inter,
			s.ExpertLayers, s.Experts, s.K, commas(s.Expert4), gb(s.Token4), commas(s.Expert2), gb(s.Token2), gb(s.AllExperts4),
			kb(s.KVBytes), kb(s.KVExpanded))
	}
	return nil
}

func gb(n int64) string { return fmt.Sprintf("%.2f GB", float64(n)/1e9) }

func kb(n int64) string {
	if n >= 1e6 {
		return fmt.Sprintf("%.2f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f KB", float64(n)/1e3)
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
