package pack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/fsguard"
	"github.com/fmoe/fmoe/quant"
	"github.com/fmoe/fmoe/tokenizer"
)

// nonFinite returns the index and kind ("NaN", "+Inf", "-Inf") of the first element of float
// data that is not finite, or -1. Other dtypes are not floats and have nothing to check.
func nonFinite(dtype string, data []byte) (int, string) {
	var expMask, mantMask, signBit uint32
	size := 0
	switch dtype {
	case format.DTypeBF16:
		expMask, mantMask, signBit, size = 0x7f80, 0x007f, 0x8000, 2
	case format.DTypeF16:
		expMask, mantMask, signBit, size = 0x7c00, 0x03ff, 0x8000, 2
	case format.DTypeF32:
		expMask, mantMask, signBit, size = 0x7f800000, 0x007fffff, 0x80000000, 4
	default:
		return -1, ""
	}
	for i := 0; i+size <= len(data); i += size {
		var v uint32
		if size == 2 {
			v = uint32(binary.LittleEndian.Uint16(data[i:]))
		} else {
			v = binary.LittleEndian.Uint32(data[i:])
		}
		if v&expMask != expMask {
			continue
		}
		switch {
		case v&mantMask != 0:
			return i / size, "NaN"
		case v&signBit != 0:
			return i / size, "-Inf"
		default:
			return i / size, "+Inf"
		}
	}
	return -1, ""
}

// checkFinite rejects a float tensor holding NaN or infinity: copied as it is (norms, bf16
// matrices, MLX scales and biases), it would turn every forward pass into garbage. part narrows
// the message to an expert's slice; base is the slice's first element in the whole tensor.
func (c *checkpoint) checkFinite(t *srcTensor, data []byte, part string, base int) error {
	i, kind := nonFinite(t.dtype, data)
	if i < 0 {
		return nil
	}
	if part != "" {
		part = " (" + part + ")"
	}
	return fmt.Errorf("source checkpoint: tensor %s%s in %s: element %d is %s; a checkpoint's weights are finite, so this file is damaged (download it again)",
		t.orig, part, filepath.Join(c.dir, t.shard.name), base+i, kind)
}

// checkConfigRanges rejects config values no model can run with, naming the config.json field.
// ParseConfig has checked the shapes' consistency; these are the values it takes as given.
func checkConfigRanges(path string, c *format.Config) error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%s: %s is %v, want %s", path, field, v, want)
	}
	finite := func(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
	switch {
	case !finite(c.RMSNormEps) || c.RMSNormEps <= 0 || c.RMSNormEps >= 1:
		return bad("rms_norm_eps", c.RMSNormEps, "a small positive number such as 1e-6")
	case !finite(c.RopeTheta) || c.RopeTheta <= 0:
		return bad("rope_theta", c.RopeTheta, "a positive number such as 1e7")
	case !finite(c.PartialRotaryFactor) || c.PartialRotaryFactor <= 0 || c.PartialRotaryFactor > 1:
		return bad("partial_rotary_factor", c.PartialRotaryFactor, "a fraction in (0, 1]")
	case c.RotaryDim <= 0:
		return bad("partial_rotary_factor", c.PartialRotaryFactor, fmt.Sprintf("a fraction that leaves at least 2 of head_dim %d rotated", c.HeadDim))
	case c.HeadDim <= 0:
		return bad("head_dim", c.HeadDim, "a positive integer")
	case c.MaxPositionEmbeddings <= 0:
		return bad("max_position_embeddings", c.MaxPositionEmbeddings, "a positive integer")
	}
	for _, id := range c.EOSTokenIDs {
		if id < 0 || id >= c.VocabSize {
			// The id may come from generation_config.json, which ParseConfig merged in.
			return bad("eos_token_id (here or in generation_config.json)", id, fmt.Sprintf("a token id below vocab_size %d", c.VocabSize))
		}
	}
	return nil
}

// checkTokenizer rejects a tokenizer whose ids run past the embedding (the runtime would index
// beyond it) or that lacks an end-of-sequence token named by the config.
func checkTokenizer(dir string, c *format.Config) error {
	tok, path, err := sourceTokenizer(dir)
	if tok == nil || err != nil {
		return err // no tokenizer: convert warns about it
	}
	for id := c.VocabSize; id < tok.VocabSize(); id++ {
		// Kimi-K2 numbers two reserved tokens past its embedding; only their literal text
		// encodes to them, and the runtime rejects such ids with an error.
		if !tok.ExtraReserved(id) {
			return fmt.Errorf("%s has %d tokens but config.json's vocab_size is %d: the embedding has no row for ids %d and up", path, tok.VocabSize(), c.VocabSize, c.VocabSize)
		}
	}
	for _, id := range c.EOSTokenIDs {
		if tok.TokenString(id) == "" {
			return fmt.Errorf("config.json: eos_token_id %d is not a token of %s (it has %d)", id, path, tok.VocabSize())
		}
	}
	return nil
}

// sourceTokenizer reads the checkpoint's tokenizer.json, or else Kimi-K2's tiktoken.model with
// its tokenizer_config.json; nil when it has neither.
func sourceTokenizer(dir string) (*tokenizer.Tokenizer, string, error) {
	path := filepath.Join(dir, "tokenizer.json")
	data, err := fsguard.ReadRegular(path)
	if errors.Is(err, os.ErrNotExist) {
		path = filepath.Join(dir, "tiktoken.model")
		if data, err = fsguard.ReadRegular(path); errors.Is(err, os.ErrNotExist) {
			return nil, "", nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("source checkpoint: %w", err)
		}
		config, err := fsguard.ReadRegular(filepath.Join(dir, "tokenizer_config.json"))
		if err != nil {
			return nil, "", fmt.Errorf("source checkpoint: %w (a tiktoken.model needs its tokenizer_config.json)", err)
		}
		tok, err := tokenizer.ParseTiktoken(data, config)
		if err != nil {
			return nil, "", fmt.Errorf("source checkpoint %s: %w", dir, err)
		}
		return tok, path, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("source checkpoint: %w", err)
	}
	tok, err := tokenizer.Parse(data)
	if err != nil {
		return nil, "", fmt.Errorf("source checkpoint %s: %w", path, err)
	}
	return tok, path, nil
}

// unused lists the source tensors nothing read, in the checkpoint's own names.
func (c *checkpoint) unused() []string {
	var names []string
	for _, t := range c.tensors {
		if !t.used {
			names = append(names, t.orig)
		}
	}
	slices.Sort(names)
	return names
}

// reportUnused warns about source tensors the model does not use (a layer beyond
// num_hidden_layers, a head this architecture lacks): silently dropping them would hide a
// config that does not match its weights.
func (p *packer) reportUnused() {
	names := p.ck.unused()
	if len(names) == 0 {
		return
	}
	shown := names[:min(len(names), 5)]
	more := ""
	if len(names) > len(shown) {
		more = fmt.Sprintf(", and %d more", len(names)-len(shown))
	}
	fmt.Fprintf(p.o.Log, "warning: %d tensors of %s are not used by the model its config.json describes (num_hidden_layers %d) and were not packed: %s%s\n",
		len(names), p.ck.dir, p.cfg.NumHiddenLayers, strings.Join(shown, ", "), more)
}

// elemSize is a float dtype's element size, for turning byte offsets into element indices.
func elemSize(dtype string) int {
	if n, err := quant.ElemSize(dtype); err == nil {
		return n
	}
	return 1
}
