package pack

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/quant"
)

// Block-scaled FP8 checkpoints (DeepSeek-V3/R1, Kimi-K2, Qwen's -FP8 releases) store each
// projection weight as float8_e4m3fn codes with a `weight_scale_inv` tensor beside it:
// weight[r][c] = code[r][c] * scale_inv[r/Br][c/Bc], [Br, Bc] from config.json's
// quantization_config.weight_block_size, the last tile of a row or column partial when the
// dimension is not a multiple. Embeddings, lm_head, norms and routers stay bf16.
//
// The packer reads such a weight as the float32 tensor float32(code) * float32(scale), one
// rounding, exactly the weights transformers and DeepSeek's reference code compute with. From
// there on it is a float32 source: an FP8 checkpoint packs byte for byte as the checkpoint
// holding those float32 values would (TestFP8PacksAsItsFloat). So --bits 16 stores dense
// matrices exactly (F32) and experts rounded to nearest-even bf16, the format's only 16-bit
// expert type; 4 and 8 bits quantise the float32 values.

// fp8Config is config.json's quantization_config of a block-scaled FP8 checkpoint.
type fp8Config struct {
	blockRows, blockCols int
}

// parseFP8Config returns the FP8 block size, or nil when the checkpoint is not FP8.
func parseFP8Config(path string, raw []byte) (*fp8Config, error) {
	var top struct {
		Q *struct {
			Method    string          `json:"quant_method"`
			Fmt       string          `json:"fmt"`
			BlockSize json.RawMessage `json:"weight_block_size"`
		} `json:"quantization_config"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if top.Q == nil || top.Q.Method != "fp8" {
		return nil, nil
	}
	if top.Q.Fmt != "" && top.Q.Fmt != "e4m3" {
		return nil, fmt.Errorf("%s: quantization_config.fmt is %q; fmoe reads FP8 weights in e4m3 (float8_e4m3fn)", path, top.Q.Fmt)
	}
	var b []int
	if len(top.Q.BlockSize) == 0 || string(top.Q.BlockSize) == "null" {
		return nil, fmt.Errorf("%s: quantization_config.weight_block_size is missing; fmoe reads block-scaled FP8 (quant_method \"fp8\" with weight_block_size, e.g. [128, 128]), not per-tensor FP8", path)
	}
	if err := json.Unmarshal(top.Q.BlockSize, &b); err != nil || len(b) != 2 || b[0] <= 0 || b[1] <= 0 {
		return nil, fmt.Errorf("%s: quantization_config.weight_block_size is %s, want two positive integers such as [128, 128]", path, top.Q.BlockSize)
	}
	return &fp8Config{blockRows: b[0], blockCols: b[1]}, nil
}

// tiles is the shape of the scale tensor of a [rows, cols] FP8 weight.
func (q *fp8Config) tiles(rows, cols int) []int {
	return []int{(rows + q.blockRows - 1) / q.blockRows, (cols + q.blockCols - 1) / q.blockCols}
}

// attachFP8 pairs every F8_E4M3 weight with its weight_scale_inv and checks the pair, so a
// damaged checkpoint is refused before anything is written.
func (c *checkpoint) attachFP8() error {
	for _, name := range sortedKeys(c.tensors) {
		t := c.tensors[name]
		if t.dtype != quant.DTypeF8E4M3 {
			continue
		}
		if c.fp8 == nil {
			return fmt.Errorf("source checkpoint %s: tensor %s is F8_E4M3 but config.json has no quantization_config with quant_method \"fp8\" and weight_block_size, so its scales cannot be applied", c.dir, t.orig)
		}
		if !strings.HasSuffix(name, ".weight") || len(t.shape) != 2 {
			return fmt.Errorf("source checkpoint %s: tensor %s is F8_E4M3 with shape %v; fmoe reads FP8 only for 2-D projection weights (\"….weight\", experts one tensor each)", c.dir, t.orig, t.shape)
		}
		scaleName := strings.TrimSuffix(t.orig, "weight") + "weight_scale_inv"
		s, ok := c.tensors[name+"_scale_inv"]
		if !ok {
			return fmt.Errorf("source checkpoint %s: tensor %s is F8_E4M3 but its scale tensor %s is missing (block-scaled FP8 keeps one beside every weight)", c.dir, t.orig, scaleName)
		}
		if !isFloat(s.dtype) {
			return fmt.Errorf("source checkpoint %s: tensor %s has dtype %s, want F32 or BF16 scales", c.dir, s.orig, s.dtype)
		}
		if want := c.fp8.tiles(t.shape[0], t.shape[1]); !slices.Equal(s.shape, want) {
			return fmt.Errorf("source checkpoint %s: tensor %s has shape %v; the FP8 weight %s %v in [%d, %d] tiles (quantization_config.weight_block_size) needs one scale per tile, %v",
				c.dir, s.orig, s.shape, t.orig, t.shape, c.fp8.blockRows, c.fp8.blockCols, want)
		}
		if err := c.checkFinite(s, s.data, "", 0); err != nil {
			return err
		}
		t.scale = s
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// dequantFP8 returns an FP8 weight as the float32 tensor it stands for (the rule above), in
// memory. The result names the source tensor in messages and has no pages to release.
func (c *checkpoint) dequantFP8(t *srcTensor) *srcTensor {
	return c.dequantFP8Rows(t, nil)
}

// dequantFP8Rows is dequantFP8 of the given rows only, in that order (nil: every row), for
// Qwen3-Next's fused projections (fused.go).
func (c *checkpoint) dequantFP8Rows(t *srcTensor, rows []int) *srcTensor {
	cols := t.shape[1]
	if rows == nil {
		rows = appendRange(nil, 0, t.shape[0])
	}
	br, bc := c.fp8.blockRows, c.fp8.blockCols
	ntc := (cols + bc - 1) / bc
	scales := make([]float32, len(t.scale.data)/elemSize(t.scale.dtype))
	must(quant.DecodeFloats(t.scale.dtype, t.scale.data, scales)) // attachFP8 checked the sizes
	out := make([]byte, len(rows)*cols*4)
	row := make([]float32, cols)
	for i, r := range rows {
		tr := r / br
		must(quant.DequantFP8Row(row, t.data[r*cols:(r+1)*cols], scales[tr*ntc:(tr+1)*ntc], bc))
		must(quant.EncodeFloats(format.DTypeF32, row, out[i*cols*4:(i+1)*cols*4]))
	}
	return &srcTensor{orig: t.orig, dtype: format.DTypeF32, shape: []int{len(rows), cols}, data: out, shard: t.shard, inMemory: true}
}

func must(err error) {
	if err != nil {
		panic("internal error: " + err.Error())
	}
}

// encodeDenseFP8 is encodeDense for an FP8 weight: dequantised, then packed as float32 is.
func (p *packer) encodeDenseFP8(spec format.TensorSpec, src *srcTensor) (*encoded, []*srcTensor, error) {
	ck := p.ck
	if !spec.Matrix {
		return nil, nil, fmt.Errorf("source checkpoint %s: tensor %s is F8_E4M3, but fmoe reads FP8 only for projection matrices; FP8 checkpoints keep norms, biases and other vectors in bf16", ck.dir, src.orig)
	}
	if !slices.Equal(src.shape, spec.Shape) {
		return nil, nil, fmt.Errorf("source checkpoint %s: tensor %s has shape %v, the config implies %v", ck.dir, src.orig, src.shape, spec.Shape)
	}
	if i := slices.IndexFunc(src.data, quant.E4M3IsNaN); i >= 0 {
		return nil, nil, fmt.Errorf("source checkpoint: tensor %s in %s: element %d is the F8_E4M3 NaN code %#02x; a checkpoint's weights are finite, so this file is damaged (download it again)",
			src.orig, filepath.Join(ck.dir, src.shard.name), i, src.data[i])
	}
	deq := ck.dequantFP8(src)
	if err := ck.checkFinite(deq, deq.data, "", 0); err != nil {
		return nil, nil, err // a finite code times a huge scale can still overflow
	}
	enc, err := p.encodeFloat(spec, deq)
	return enc, []*srcTensor{src, src.scale}, err
}

// findExpertsFP8 resolves layer l's experts when they are FP8, one tensor per expert and
// projection as every FP8 release stores them; ok is false for any other layout.
func (p *packer) findExpertsFP8(l int) (le *layerExperts, ok bool, err error) {
	ck, cfg := p.ck, p.cfg
	pre := format.LayerPrefix(l) + "mlp.experts."
	if t := ck.tensors[pre+"0.gate_proj.weight"]; t == nil || t.scale == nil {
		return nil, false, nil
	}
	le = &layerExperts{layer: l, dtype: format.DTypeF32}
	per := make([]map[string]*srcTensor, cfg.NumExperts)
	for e := range per {
		per[e] = map[string]*srcTensor{}
		for _, proj := range format.ExpertProjections {
			name := fmt.Sprintf("%s%d.%s.weight", pre, e, proj)
			t, ok := ck.tensors[name]
			if !ok {
				return nil, true, fmt.Errorf("source checkpoint %s: layer %d routed experts: tensor %s is missing", ck.dir, l, ck.origName(name))
			}
			if t.scale == nil {
				return nil, true, fmt.Errorf("source checkpoint %s: tensor %s is %s but other experts of layer %d are F8_E4M3", ck.dir, t.orig, t.dtype, l)
			}
			if shape, _ := format.ExpertShape(cfg, proj); !slices.Equal(t.shape, shape) {
				return nil, true, fmt.Errorf("source checkpoint %s: tensor %s has shape %v, the config implies %v", ck.dir, t.orig, t.shape, shape)
			}
			per[e][proj] = t
			le.srcs = append(le.srcs, t, t.scale)
		}
	}
	// fillBlock checks what float returns against the tensor source names: a NaN code (0x7f,
	// 0xff) dequantises to NaN and is reported there, against the FP8 tensor, by element index.
	// Scanning the codes here instead would read every expert twice.
	le.float = func(e int, proj string) []byte { return ck.dequantFP8(per[e][proj]).data }
	le.source = func(e int, proj string) (*srcTensor, int) {
		t := per[e][proj]
		return &srcTensor{orig: t.orig, dtype: format.DTypeF32, shard: t.shard, inMemory: true}, 0
	}
	le.done = func(e int) {
		for _, t := range per[e] {
			t.release()
			t.scale.release()
		}
	}
	return le, true, nil
}
