package pack

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/progress"
)

// Preset is a model shape synth can write.
type Preset struct {
	Name                                               string
	Layers, Hidden, Vocab                              int
	Heads, KVHeads, HeadDim                            int
	LinearKHeads, LinearVHeads, LinearKDim, LinearVDim int
	Experts, TopK, MoeInter, SharedInter               int
	// Family is the format.Arch* of the shape ("": Qwen3.5-MoE); the other families have
	// DenseLayers leading dense layers of MLP width DenseInter (synthconfig.go).
	Family                  string
	DenseLayers, DenseInter int
	// Config overrides familyConfig's fields with the published checkpoint's (latent
	// attention sizes, routing groups, rotary): those that change a tensor's size must.
	Config map[string]any
}

// Presets are the real dimensions of released models and the tiny test shapes of each
// family. Where each real preset's numbers come from (every one read from a published
// config, none inferred; docs/families.md, "Where the sizes come from"):
//   - qwen3.5-*: the project's reference notes §1.1–1.2.
//   - deepseek-v3-671b: deepseek-ai/DeepSeek-V3 inference/configs/config_671B.json
//     (commit 9b4e978) and the YaRN defaults of its inference/model.py ModelArgs.
//   - kimi-k2-1t: MoonshotAI/Kimi-K2 README.md "Model Summary" (layers, dense layers, dims,
//     heads, experts), THUDM/slime scripts/models/kimi-k2.sh (commit 624b824: vocabulary,
//     latent sizes, rotary base and YaRN factor, routed_scaling_factor, groups).
//   - glm-4.5-355b: THUDM/slime scripts/models/glm4.5-355B-A32B.sh (commit 624b824).
//   - qwen3-235b-a22b: THUDM/slime scripts/models/qwen3-235B-A22B.sh (commit 624b824).
//   - qwen3-coder-480b-a35b: zyzshishui/miles scripts/models/qwen3-coder-480B-A35B.sh
//     (commit b269970, "Qwen/Qwen3-Coder-480B-A35B-Instruct").
//   - qwen3-next-80b-a3b: THUDM/slime scripts/models/qwen3-next-80B-A3B.sh (commit 624b824)
//     and the GatedDeltaNet sizes of transformers' Qwen3NextConfig defaults, documented as
//     Qwen/Qwen3-Next-80B-A3B-Instruct's (configuration_qwen3_next.py, commit 008e574). A
//     Qwen3-Next pack is a Qwen3.5-MoE pack (format/qwen3next.go), so synth writes the
//     shape in Qwen3.5-MoE's (unfused) layout.
var Presets = []Preset{
	{"qwen3.5-397b-a17b", 60, 4096, 248320, 32, 2, 256, 16, 64, 128, 128, 512, 10, 1024, 1024, "", 0, 0, nil},
	{"qwen3.5-122b-a10b", 48, 3072, 248320, 32, 2, 256, 16, 64, 128, 128, 256, 8, 1024, 1024, "", 0, 0, nil},
	{"qwen3.5-35b-a3b", 40, 2048, 248320, 16, 2, 256, 16, 32, 128, 128, 256, 8, 512, 512, "", 0, 0, nil},
	{"qwen3-next-80b-a3b", 48, 2048, 151936, 16, 2, 256, 16, 32, 128, 128, 512, 10, 512, 512, "", 0, 0, nil},
	{"qwen3-235b-a22b", 94, 4096, 151936, 64, 4, 128, 0, 0, 0, 0, 128, 8, 1536, 0, format.ArchQwen3MoE, 0, 12288, nil},
	{"qwen3-coder-480b-a35b", 62, 6144, 151936, 96, 8, 128, 0, 0, 0, 0, 160, 8, 2560, 0, format.ArchQwen3MoE, 0, 8192,
		map[string]any{"rope_parameters": map[string]any{"rope_type": "default", "rope_theta": 1e7}, "max_position_embeddings": 262144}},
	{"glm-4.5-355b", 92, 5120, 151552, 96, 8, 128, 0, 0, 0, 0, 160, 8, 1536, 1536, format.ArchGLM4MoE, 3, 12288,
		map[string]any{"n_group": 1, "topk_group": 1, "routed_scaling_factor": 2.5}},
	{"deepseek-v3-671b", 61, 7168, 129280, 128, 128, 192, 0, 0, 0, 0, 256, 8, 2048, 2048, format.ArchDeepseekV3, 3, 18432,
		mlaConfig(8, 4, 2.5, 10000, 40, 163840)},
	{"kimi-k2-1t", 61, 7168, 163840, 64, 64, 192, 0, 0, 0, 0, 384, 8, 2048, 2048, format.ArchDeepseekV3, 1, 18432,
		with(mlaConfig(1, 1, 2.827, 50000, 32, 131072), "model_type", "kimi_k2")},
	{"tiny", 8, 128, 2048, 4, 2, 64, 2, 4, 32, 32, 16, 4, 64, 64, "", 0, 0, nil},
	{"qwen3-moe-tiny", 4, 128, 2048, 4, 2, 32, 0, 0, 0, 0, 16, 4, 64, 0, format.ArchQwen3MoE, 1, 256, nil},
	{"glm4-moe-tiny", 4, 128, 2048, 4, 2, 32, 0, 0, 0, 0, 16, 4, 64, 64, format.ArchGLM4MoE, 1, 256, nil},
	{"deepseek-v3-tiny", 4, 128, 2048, 4, 4, 32, 0, 0, 0, 0, 16, 4, 64, 64, format.ArchDeepseekV3, 1, 256, nil},
}

// mlaConfig is the latent attention and routing of DeepSeek-V3 and Kimi-K2 as their configs
// state them: q LoRA 1536, latent 512, 128 + 64 query/key dims and 128 value dims a head,
// rotary pairs interleaved, YaRN from 4,096 positions.
func mlaConfig(groups, topkGroups int, scale, theta, factor float64, maxPos int) map[string]any {
	return map[string]any{
		"q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
		"rope_interleave": true, "n_group": groups, "topk_group": topkGroups, "routed_scaling_factor": scale,
		"rope_theta": theta, "max_position_embeddings": maxPos,
		"rope_scaling": map[string]any{"type": "yarn", "factor": factor, "original_max_position_embeddings": 4096,
			"beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0},
	}
}

func with(m map[string]any, k string, v any) map[string]any {
	m[k] = v
	return m
}

// CheckMoELayers refuses a synth of the first layers layers that has no MoE layer: a preset
// whose first DenseLayers layers are dense needs at least DenseLayers+1, or the checkpoint has
// no experts to stream (and nothing fmoe is for to measure).
func (p *Preset) CheckMoELayers(layers int) error {
	if layers <= p.DenseLayers {
		return fmt.Errorf("--layers %d: %s's first %d layers are dense, so %d layers have no experts (want at least %d for one MoE layer)",
			layers, p.Name, p.DenseLayers, layers, p.DenseLayers+1)
	}
	return nil
}

// PresetNames lists the preset names.
func PresetNames() []string {
	var n []string
	for _, p := range Presets {
		n = append(n, p.Name)
	}
	return n
}

// SynthOptions control Synth.
type SynthOptions struct {
	Preset   string
	Layers   int    // 0: all of the preset's layers
	Layout   string // "mlx-4bit" or "hf"; "": SynthLayout's choice for the preset
	Out      string
	Force    bool
	Seed     uint64
	Progress io.Writer
}

// synthTensor is one tensor to generate: fill writes its bytes.
type synthTensor struct {
	name  string
	dtype string
	shape []int
	fill  func(rng *rng, b []byte)
}

func (t *synthTensor) size() int64 {
	n, _ := format.DataSize(t.dtype, t.shape, 0)
	if t.dtype == format.DTypeU32 {
		n = 4
		for _, d := range t.shape {
			n *= int64(d)
		}
	}
	return n
}

// Synth writes a random checkpoint with a preset's real dimensions (its first Layers layers), in
// the mlx-community or Hugging Face layout, for benchmarks and for sizing a disk. Values are
// random but shaped like real ones (bf16 weights of about 1/sqrt(in), positive scales), so
// quantisation and compression behave as on a real model. The tiny fixture's tokenizer and chat
// template go beside the shards, so the checkpoint is complete for every tool that reads one.
func Synth(ctx context.Context, o SynthOptions) (int64, error) {
	p := FindPreset(o.Preset)
	if p == nil {
		return 0, fmt.Errorf("unknown preset %q (have %s)", o.Preset, strings.Join(PresetNames(), ", "))
	}
	layers := p.Layers
	if o.Layers > 0 {
		if o.Layers > p.Layers {
			return 0, fmt.Errorf("--layers %d: %s has %d layers", o.Layers, p.Name, p.Layers)
		}
		layers = o.Layers
	}
	if err := p.CheckMoELayers(layers); err != nil {
		return 0, err
	}
	if o.Layout == "" {
		var err error
		if o.Layout, err = SynthLayout(p.Name); err != nil {
			return 0, err
		}
	}
	if o.Layout != "mlx-4bit" && o.Layout != "hf" {
		return 0, fmt.Errorf("--layout %q: want mlx-4bit or hf", o.Layout)
	}
	cfg := synthConfig(p, layers, o.Layout == "mlx-4bit")
	var c format.Config
	raw, _ := json.Marshal(cfg)
	c, err := format.ParseConfig("synth config", raw, nil)
	if err != nil {
		return 0, err
	}
	if o.Layout == "mlx-4bit" {
		if err := mlxGroupsFit(&c, p.Name); err != nil {
			return 0, err
		}
		if p.Family != "" && p.Family != format.ArchQwen35MoE {
			addFamilyMLXQuantization(cfg, &c)
		}
	}
	shards := synthShards(&c, o.Layout == "mlx-4bit")
	out, err := newStagedDir(o.Out, o.Force, nil)
	if err != nil {
		return 0, err
	}
	ok := false
	defer func() {
		if !ok {
			out.abandon()
		}
	}()
	var total int64
	for _, s := range shards {
		for _, t := range s {
			total += t.size()
		}
	}
	bar := progress.New(o.Progress, total, "writing "+p.Name)
	weightMap := map[string]string{}
	// Shards are independent (each has its own seeded generator), so they are written in
	// parallel: generating tens of gigabytes of random numbers is CPU-bound.
	sem := make(chan struct{}, runtime.NumCPU())
	errs := make(chan error, len(shards))
	for i, s := range shards {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		for _, t := range s {
			weightMap[t.name] = name
		}
		r := &rng{s: (o.Seed+uint64(i))*0x9E3779B97F4A7C15 + 1}
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- writeSynthShard(ctx, out.path(name), s, r, bar)
		}()
	}
	var first error
	for range shards {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return 0, first
	}
	idx, _ := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}, "", "  ")
	cj, _ := json.MarshalIndent(cfg, "", "  ")
	files, err := synthTokenizerFiles()
	if err != nil {
		return 0, err
	}
	files["model.safetensors.index.json"], files["config.json"] = idx, cj
	for name, data := range files {
		if err := writeFileVia(osCreate, out.path(name), data); err != nil {
			return 0, err
		}
	}
	if err := out.commit(); err != nil {
		return 0, err
	}
	ok = true
	bar.Finish()
	return total, nil
}

func synthConfig(p *Preset, layers int, mlx bool) map[string]any {
	if p.Family != "" && p.Family != format.ArchQwen35MoE {
		return familyConfig(p, layers)
	}
	types := make([]string, layers)
	for i := range types {
		types[i] = format.LinearAttention
		if (i+1)%4 == 0 {
			types[i] = format.FullAttention
		}
	}
	text := map[string]any{
		"model_type": "qwen3_5_moe_text", "hidden_size": p.Hidden, "num_hidden_layers": layers, "vocab_size": p.Vocab,
		"layer_types": types, "num_attention_heads": p.Heads, "num_key_value_heads": p.KVHeads, "head_dim": p.HeadDim,
		"linear_num_key_heads": p.LinearKHeads, "linear_num_value_heads": p.LinearVHeads,
		"linear_key_head_dim": p.LinearKDim, "linear_value_head_dim": p.LinearVDim, "linear_conv_kernel_dim": 4,
		"num_experts": p.Experts, "num_experts_per_tok": p.TopK, "moe_intermediate_size": p.MoeInter,
		"shared_expert_intermediate_size": p.SharedInter, "rms_norm_eps": 1e-6, "max_position_embeddings": 262144,
		"rope_parameters":     map[string]any{"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25},
		"tie_word_embeddings": false, "eos_token_id": synthEOS,
	}
	top := map[string]any{"architectures": []string{"Qwen3_5MoeForConditionalGeneration"}, "model_type": "qwen3_5_moe",
		"text_config": text, "tie_word_embeddings": false}
	if mlx {
		q := map[string]any{"group_size": 64, "bits": 4, "mode": "affine"}
		for l := 0; l < layers; l++ {
			for _, g := range []string{"mlp.gate", "mlp.shared_expert_gate"} {
				q["language_model."+format.LayerPrefix(l)+g] = map[string]any{"group_size": 64, "bits": 8}
			}
		}
		top["quantization"] = q
	}
	return top
}

// synthShards lists the tensors, one shard for the non-expert tensors and one per layer's
// experts, as real releases roughly do.
func synthShards(c *format.Config, mlx bool) [][]synthTensor {
	var dense []synthTensor
	experts := make([][]synthTensor, c.NumHiddenLayers)
	name := func(canon string) string {
		// mlx-lm keeps Qwen3.5-MoE's multimodal prefix; the other families have none.
		if mlx && c.Architecture == format.ArchQwen35MoE {
			return "language_model." + canon
		}
		return canon
	}
	addMatrix := func(list *[]synthTensor, canon string, lead []int, rows, cols, bits int) {
		if !mlx {
			*list = append(*list, synthTensor{name(canon), format.DTypeBF16, append(append([]int{}, lead...), rows, cols), fillWeights(cols)})
			return
		}
		base := name(strings.TrimSuffix(canon, ".weight"))
		*list = append(*list,
			synthTensor{base + ".weight", format.DTypeU32, append(append([]int{}, lead...), rows, cols*bits/32), fillRandom},
			synthTensor{base + ".scales", format.DTypeBF16, append(append([]int{}, lead...), rows, cols/64), fillScales(cols, bits)},
			synthTensor{base + ".biases", format.DTypeBF16, append(append([]int{}, lead...), rows, cols/64), fillBiases(cols, bits)})
	}
	for _, s := range format.Schema(c) {
		switch {
		case s.Matrix:
			bits := 4
			if s.Gate {
				bits = 8
			}
			addMatrix(&dense, s.Name, nil, s.Shape[0], s.Shape[1], bits)
		case strings.HasSuffix(s.Name, "conv1d.weight"):
			shape := []int{s.Shape[0], 1, s.Shape[1]}
			if mlx {
				shape = []int{s.Shape[0], s.Shape[1], 1}
			}
			dense = append(dense, synthTensor{name(s.Name), format.DTypeBF16, shape, fillWeights(4)})
		case strings.HasSuffix(s.Name, "A_log") && mlx:
			dense = append(dense, synthTensor{name(s.Name), format.DTypeF32, s.Shape, fillALog})
		default:
			// Norms are stored as 1+w (MLX Qwen3.5) or are plain w (the other families): about 1.
			one := (s.NormShift && mlx) || (c.Architecture != format.ArchQwen35MoE && strings.HasSuffix(s.Name, "norm.weight"))
			dense = append(dense, synthTensor{name(s.Name), format.DTypeBF16, s.Shape, fillNorm(one)})
		}
	}
	for l := 0; l < c.NumHiddenLayers; l++ {
		pre := format.LayerPrefix(l) + "mlp."
		for _, proj := range format.ExpertProjections {
			shape, _ := format.ExpertShape(c, proj)
			if mlx && c.LayerExperts(l) > 0 {
				addMatrix(&experts[l], pre+"switch_mlp."+proj+".weight", []int{c.NumExperts}, shape[0], shape[1], 4)
			}
		}
		if !mlx {
			for e := 0; e < c.LayerExperts(l); e++ {
				for _, proj := range format.ExpertProjections {
					shape, _ := format.ExpertShape(c, proj)
					addMatrix(&experts[l], fmt.Sprintf("%sexperts.%d.%s.weight", pre, e, proj), nil, shape[0], shape[1], 16)
				}
			}
		}
	}
	shards := [][]synthTensor{dense}
	for _, ts := range experts {
		shards = append(shards, splitShard(ts, synthShardBytes)...)
	}
	return shards
}

// synthShardBytes caps an expert shard, as real checkpoints are sharded: one generator per
// shard, so a few layers of a large model still use every core (one shard per layer wrote a
// 397B layer's 13 GB of bf16 at one core's speed).
const synthShardBytes = 2 << 30

// splitShard cuts ts into runs of whole tensors of at most max bytes each (a larger tensor
// stands alone).
func splitShard(ts []synthTensor, max int64) [][]synthTensor {
	var out [][]synthTensor
	var cur []synthTensor
	var n int64
	for _, t := range ts {
		if len(cur) > 0 && n+t.size() > max {
			out = append(out, cur)
			cur, n = nil, 0
		}
		cur = append(cur, t)
		n += t.size()
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func writeSynthShard(ctx context.Context, path string, ts []synthTensor, r *rng, bar *progress.Bar) error {
	hdr := map[string]any{"__metadata__": map[string]string{"format": "fmoe-synth"}}
	var off int64
	for _, t := range ts {
		hdr[t.name] = map[string]any{"dtype": t.dtype, "shape": t.shape, "data_offsets": []int64{off, off + t.size()}}
		off += t.size()
	}
	h, _ := json.Marshal(hdr)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 4<<20)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	w.Write(n[:])
	w.Write(h)
	buf := make([]byte, 4<<20)
	for _, t := range ts {
		for left := t.size(); left > 0; {
			if err := ctx.Err(); err != nil {
				return err
			}
			chunk := buf[:min(int64(len(buf)), left)]
			t.fill(r, chunk)
			if _, err := w.Write(chunk); err != nil {
				return fmt.Errorf("writing %s: %w", path, err)
			}
			left -= int64(len(chunk))
			bar.Add(int64(len(chunk)))
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Sync()
}

// rng is xorshift64*: fast enough to generate tens of gigabytes, and seeded for repeatability.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s ^= r.s >> 12
	r.s ^= r.s << 25
	r.s ^= r.s >> 27
	return r.s * 2685821657736338717
}

func fillRandom(r *rng, b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.next())
	}
}

// bf16Near returns a random bf16 of magnitude in [2^e, 2^(e+2)) with random sign.
func bf16Near(x uint64, e int, signed bool) uint16 {
	exp := uint16(127+e) + uint16(x>>7&1)
	v := exp<<7 | uint16(x&0x7f)
	if signed && x>>8&1 == 1 {
		v |= 0x8000
	}
	return v
}

func log2Floor(n int) int {
	k := 0
	for n > 1 {
		n >>= 1
		k++
	}
	return k
}

// fillWeights writes bf16 values of about 1/sqrt(in).
func fillWeights(in int) func(*rng, []byte) {
	e := -log2Floor(in)/2 - 1
	return func(r *rng, b []byte) {
		for i := 0; i+8 <= len(b); i += 8 {
			x := r.next()
			for k := 0; k < 4; k++ {
				binary.LittleEndian.PutUint16(b[i+2*k:], bf16Near(x>>(16*k), e, true))
			}
		}
	}
}

// fillScales writes positive bf16 scales: a group of weights ~1/sqrt(in) spans about
// 4/sqrt(in), divided into 2^bits-1 steps.
func fillScales(in, bits int) func(*rng, []byte) {
	e := -log2Floor(in)/2 + 2 - bits
	return func(r *rng, b []byte) {
		for i := 0; i+2 <= len(b); i += 2 {
			binary.LittleEndian.PutUint16(b[i:], bf16Near(r.next(), e, false))
		}
	}
}

func fillBiases(in, bits int) func(*rng, []byte) {
	e := -log2Floor(in)/2 + 1
	return func(r *rng, b []byte) {
		for i := 0; i+2 <= len(b); i += 2 {
			binary.LittleEndian.PutUint16(b[i:], bf16Near(r.next(), e, false)|0x8000)
		}
	}
}

// fillNorm writes norm-like weights: around 1 when stored shifted (MLX), around 0 otherwise.
func fillNorm(shifted bool) func(*rng, []byte) {
	return func(r *rng, b []byte) {
		for i := 0; i+2 <= len(b); i += 2 {
			v := bf16Near(r.next(), -4, true)
			if shifted {
				v = 0x3f80 | uint16(r.next()&0x3f) // 1.0 to 1.5
			}
			binary.LittleEndian.PutUint16(b[i:], v)
		}
	}
}

func fillALog(r *rng, b []byte) {
	for i := 0; i+4 <= len(b); i += 4 {
		binary.LittleEndian.PutUint32(b[i:], 0x3f800000|uint32(r.next()&0x7fffff)) // log-decay 1..2
	}
}
