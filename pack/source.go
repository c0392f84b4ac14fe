package pack

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/fsguard"
	"github.com/fmoe/fmoe/internal/mmap"
)

// Source layouts.
const (
	LayoutHF   = "hf"    // transformers save_pretrained of the CausalLM: model.layers.N.*
	LayoutHFVL = "hf-vl" // official release: model.language_model.*, fused experts, visual + mtp
	LayoutMLX  = "mlx"   // mlx-community: language_model.model.*, affine-quantised
)

// srcTensor is one tensor of the checkpoint, under its canonical name.
type srcTensor struct {
	orig  string // name in the checkpoint
	dtype string
	shape []int
	data  []byte // view into the mapped shard
	shard *shard
	off   int64      // offset of data in the shard, for releasing pages
	used  bool       // read by the packer; the rest is reported
	scale *srcTensor // an F8_E4M3 weight's weight_scale_inv (fp8.go)
	// inMemory data was made by the packer (a dequantised FP8 weight), not mapped: nothing to
	// release. shard still names the file it came from.
	inMemory bool
}

type shard struct {
	name string
	file *mmap.File
	// standIn: file is a zero mapping laid out from the shard's header, not the shard itself
	// (a streaming pack before the shard has arrived, stream.go). Its tensors read zeros.
	standIn bool
}

// checkpoint is an opened source directory.
type checkpoint struct {
	dir          string
	layout       string
	rawConfig    []byte
	config       format.Config
	quant        *quantConfig // nil for float checkpoints
	fp8          *fp8Config   // block-scaled FP8 checkpoints (fp8.go)
	tensors      map[string]*srcTensor
	shards       []*shard
	skipped      []string // name patterns of tensors a text runtime does not need
	skippedCount int
	normShifted  bool
	// bareMLX: an mlx-community conversion of a text-only model, whose names carry no
	// language_model. prefix (Qwen3-MoE, GLM-4.5).
	bareMLX bool
	// fused holds Qwen3-Next's split projections by canonical name (fused.go).
	fused map[string]fusedPart
}

// quantConfig is config.json's "quantization" block (MLX).
type quantConfig struct {
	GroupSize int
	Bits      int
	Overrides map[string]struct{ GroupSize, Bits int } // by original module path
}

func (q *quantConfig) forModule(orig string) (bits, group int) {
	if o, ok := q.Overrides[orig]; ok {
		return o.Bits, o.GroupSize
	}
	return q.Bits, q.GroupSize
}

func (c *checkpoint) Close() {
	for _, s := range c.shards {
		if s.file != nil {
			s.file.Close()
		}
	}
}

// shardOpener maps the shard at path; openCheckpoint maps the file itself, a streaming pack
// a stand-in from its header.
type shardOpener func(name, path string) (*mmap.File, bool, error)

// openShardFile maps a shard privately (FP8 headers are retyped in place, fp8_header.go).
func openShardFile(_, path string) (*mmap.File, bool, error) {
	mf, err := mmap.OpenPrivate(path)
	return mf, false, err
}

// openCheckpoint maps every shard and indexes the tensors under canonical names.
func openCheckpoint(dir string) (*checkpoint, error) { return openCheckpointWith(dir, openShardFile) }

func openCheckpointWith(dir string, open shardOpener) (*checkpoint, error) {
	cfgPath := filepath.Join(dir, "config.json")
	raw, err := fsguard.ReadRegular(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("source checkpoint: %w", err)
	}
	gen, err := fsguard.ReadRegular(filepath.Join(dir, "generation_config.json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("source checkpoint: %w", err)
	}
	cfg, err := format.ParseConfig(cfgPath, raw, gen)
	if err != nil {
		return nil, err
	}
	fp8, err := parseFP8Config(cfgPath, raw)
	if err != nil {
		return nil, err
	}
	var q *quantConfig
	if fp8 == nil {
		if q, err = parseQuantConfig(cfgPath, raw); err != nil {
			return nil, err
		}
	}
	ck := &checkpoint{dir: dir, rawConfig: raw, config: cfg, quant: q, fp8: fp8, tensors: map[string]*srcTensor{}}
	err = ck.loadShards(open)
	if err == nil {
		err = ck.attachFP8()
	}
	if err == nil {
		err = ck.splitFused()
	}
	if err != nil {
		ck.Close()
		return nil, err
	}
	return ck, nil
}

func parseQuantConfig(path string, raw []byte) (*quantConfig, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	block, ok := top["quantization"]
	if !ok {
		block, ok = top["quantization_config"]
	}
	if !ok || string(block) == "null" {
		return nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(block, &fields); err != nil {
		return nil, fmt.Errorf("%s: quantization: %w", path, err)
	}
	q := &quantConfig{GroupSize: 64, Bits: 4, Overrides: map[string]struct{ GroupSize, Bits int }{}}
	for k, v := range fields {
		var err error
		switch k {
		case "group_size":
			err = json.Unmarshal(v, &q.GroupSize)
		case "bits":
			err = json.Unmarshal(v, &q.Bits)
		case "mode":
			var mode string
			err = json.Unmarshal(v, &mode)
			if err == nil && mode != "affine" {
				return nil, fmt.Errorf("%s: quantization mode %q is not supported (fmoe reads MLX affine)", path, mode)
			}
		case "quant_method":
			var m string
			_ = json.Unmarshal(v, &m)
			return nil, fmt.Errorf("%s: quantization method %q is not supported (fmoe reads bf16/f16/f32, MLX affine and block-scaled FP8 checkpoints)", path, m)
		default:
			var o struct {
				GroupSize int `json:"group_size"`
				Bits      int `json:"bits"`
			}
			if json.Unmarshal(v, &o) == nil && o.Bits > 0 {
				if o.GroupSize == 0 {
					o.GroupSize = q.GroupSize
				}
				q.Overrides[k] = struct{ GroupSize, Bits int }{o.GroupSize, o.Bits}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: quantization.%s: %w", path, k, err)
		}
	}
	if q.Bits != 2 && q.Bits != 4 && q.Bits != 8 {
		return nil, fmt.Errorf("%s: quantization bits %d not supported (want 2, 4 or 8)", path, q.Bits)
	}
	return q, nil
}

// shardList returns the shard files and, with an index, which shard each tensor should be in.
func (c *checkpoint) shardList() ([]string, map[string]string, error) {
	idxPath := filepath.Join(c.dir, "model.safetensors.index.json")
	raw, err := fsguard.ReadRegular(idxPath)
	if errors.Is(err, os.ErrNotExist) {
		single := filepath.Join(c.dir, "model.safetensors")
		if _, err := os.Stat(single); err != nil {
			return nil, nil, fmt.Errorf("source checkpoint %s: neither model.safetensors.index.json nor model.safetensors found", c.dir)
		}
		return []string{"model.safetensors"}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("source checkpoint: %w", err)
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", idxPath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, nil, fmt.Errorf("%s: weight_map is empty", idxPath)
	}
	seen := map[string]bool{}
	var files []string
	for _, f := range idx.WeightMap {
		if strings.Contains(f, "/") || strings.Contains(f, `\`) || f == ".." {
			return nil, nil, fmt.Errorf("%s: shard name %q must be a plain file name", idxPath, f)
		}
		if !seen[f] {
			seen[f] = true
			files = append(files, f)
		}
	}
	sort.Strings(files)
	return files, idx.WeightMap, nil
}

func (c *checkpoint) loadShards(open shardOpener) error {
	files, weightMap, err := c.shardList()
	if err != nil {
		return err
	}
	where := map[string]string{} // original name -> shard actually holding it
	var dtypeErrs []*dtypeError
	for _, f := range files {
		path := filepath.Join(c.dir, f)
		mf, standIn, err := open(f, path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("shard %s named in model.safetensors.index.json is missing: %v", path, err)
			}
			return fmt.Errorf("shard: %w", err) // the error names the file
		}
		mf.Sequential()
		sh := &shard{name: f, file: mf, standIn: standIn}
		c.shards = append(c.shards, sh)
		entries, dataStart, views, de, err := shardViews(mf, path)
		if err != nil {
			return err
		}
		if de != nil {
			dtypeErrs = append(dtypeErrs, de)
		}
		for _, e := range entries {
			if prev, dup := where[e.Name]; dup {
				return fmt.Errorf("tensor %s is in both %s and %s", e.Name, prev, f)
			}
			where[e.Name] = f
			canon, keep := canonicalName(e.Name)
			if !keep {
				c.noteSkipped(e.Name)
				continue
			}
			if c.mtpLayer(canon) {
				c.notePattern(fmt.Sprintf("%s%d.* (multi-token prediction)", strings.TrimSuffix(e.Name, strings.TrimPrefix(canon, "model.layers.")), c.config.NumHiddenLayers))
				continue
			}
			c.tensors[canon] = &srcTensor{orig: e.Name, dtype: e.DType, shape: e.Shape, data: views[e.Name], shard: sh, off: dataStart + e.Offsets[0]}
		}
	}
	for name, f := range weightMap {
		if got, ok := where[name]; !ok {
			return fmt.Errorf("model.safetensors.index.json puts tensor %s in %s, but that shard's header does not list it", name, f)
		} else if got != f {
			return fmt.Errorf("model.safetensors.index.json puts tensor %s in %s, but it is in %s", name, f, got)
		}
	}
	for _, de := range dtypeErrs {
		if canon, keep := canonicalName(de.name); keep && c.tensors[canon] != nil {
			return de
		}
	}
	c.layout = detectLayout(where)
	if c.layout == LayoutHF && c.quant != nil {
		c.layout, c.bareMLX = LayoutMLX, true
	}
	c.normShifted = c.detectNormShift()
	return nil
}

// canonicalName strips the checkpoint-specific prefixes and says whether a text runtime needs
// the tensor.
func canonicalName(n string) (string, bool) {
	switch {
	case strings.HasPrefix(n, "model.visual."), strings.HasPrefix(n, "visual."),
		strings.HasPrefix(n, "vision_tower."), strings.HasPrefix(n, "mtp."),
		strings.HasPrefix(n, "model.mtp."), strings.HasPrefix(n, "language_model.mtp."):
		return "", false
	case strings.HasPrefix(n, "model.language_model."):
		return "model." + strings.TrimPrefix(n, "model.language_model."), true
	case strings.HasPrefix(n, "language_model.model."):
		return "model." + strings.TrimPrefix(n, "language_model.model."), true
	case strings.HasPrefix(n, "language_model."):
		return strings.TrimPrefix(n, "language_model."), true
	}
	return n, true
}

// mtpLayer reports a tensor of a multi-token-prediction layer: GLM-4.5 and DeepSeek-V3 store
// their num_nextn_predict_layers of them after the decoder, as model.layers.{num_hidden_layers}.*
// on, and a text runtime does not run them. Other layers past the last are not skipped here
// (the packer reports them as unused).
func (c *checkpoint) mtpLayer(canon string) bool {
	l, ok := layerOf(canon)
	first := c.config.NumHiddenLayers
	return ok && l >= first && l-first < nextnLayers(c.rawConfig)
}

// nextnLayers is config.json's num_nextn_predict_layers (0 when absent or not a small count).
func nextnLayers(raw []byte) int {
	var cfg struct {
		N    int `json:"num_nextn_predict_layers"`
		Text *struct {
			N int `json:"num_nextn_predict_layers"`
		} `json:"text_config"`
	}
	if json.Unmarshal(raw, &cfg) != nil {
		return 0
	}
	n := cfg.N
	if cfg.Text != nil && cfg.Text.N > 0 {
		n = cfg.Text.N
	}
	return min(max(n, 0), 16)
}

func (c *checkpoint) noteSkipped(orig string) {
	prefix := orig
	if i := strings.IndexByte(orig, '.'); i > 0 {
		prefix = orig[:i+1]
		if strings.HasPrefix(orig, "model.") {
			if j := strings.IndexByte(orig[6:], '.'); j > 0 {
				prefix = orig[:6+j+1]
			}
		}
	}
	c.notePattern(prefix + "*")
}

func (c *checkpoint) notePattern(pattern string) {
	c.skippedCount++
	for _, p := range c.skipped {
		if p == pattern {
			return
		}
	}
	c.skipped = append(c.skipped, pattern)
}

func detectLayout(names map[string]string) string {
	for n := range names {
		if strings.HasPrefix(n, "language_model.") {
			return LayoutMLX
		}
	}
	for n := range names {
		if strings.HasPrefix(n, "model.language_model.") {
			return LayoutHFVL
		}
	}
	return LayoutHF
}

// detectNormShift applies mlx-lm's test: a conv1d kernel stored [C,1,K] means a raw Hugging Face
// checkpoint whose zero-centred norms still need the +1.
func (c *checkpoint) detectNormShift() bool {
	if !slices.ContainsFunc(format.Schema(&c.config), func(s format.TensorSpec) bool { return s.NormShift }) {
		return false // a family without zero-centred norms
	}
	for l, t := range c.config.LayerTypes {
		if t != format.LinearAttention {
			continue
		}
		if s, ok := c.tensors[format.LayerPrefix(l)+"linear_attn.conv1d.weight"]; ok && len(s.shape) == 3 {
			return s.shape[2] == 1
		}
	}
	return c.layout == LayoutMLX
}

// release drops a source tensor's pages from this process's resident set once it is packed.
func (t *srcTensor) release() {
	if t.inMemory {
		return
	}
	t.shard.file.Release(t.off, int64(len(t.data)))
}

// releaseExpert drops expert e's slice of a tensor stacked over n experts: a layer's stacked
// experts are gigabytes, so pages go as soon as each expert is written, not at the layer's end.
func (t *srcTensor) releaseExpert(n, e int) {
	if t.inMemory {
		return
	}
	per := int64(len(t.data) / n)
	t.shard.file.Release(t.off+int64(e)*per, per)
}

// shardViews checks a mapped shard's framing and slices its tensors, returning where the data
// starts. A dtype the packer does not read is returned, not failed on: the caller decides
// whether the tensor matters (its view is sliced by hand meanwhile).
func shardViews(mf *mmap.File, path string) ([]headerEntry, int64, map[string][]byte, *dtypeError, error) {
	entries, dataStart, err := parseHeader(mf.Data)
	if err != nil {
		return nil, 0, nil, nil, fmt.Errorf("shard %s: %w", path, err)
	}
	views, err := sliceTensors(mf.Data, entries, mf.Overwrite)
	var de *dtypeError
	if errors.As(err, &de) {
		de.shard = path
		views = map[string][]byte{}
		for _, e := range entries {
			views[e.Name] = mf.Data[dataStart+e.Offsets[0] : dataStart+e.Offsets[1]]
		}
		return entries, dataStart, views, de, nil
	}
	if err != nil {
		return nil, 0, nil, nil, fmt.Errorf("shard %s: %w", path, err)
	}
	return entries, dataStart, views, nil, nil
}
