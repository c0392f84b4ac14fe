package pack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/fsguard"
)

// sideFiles are the tokenizer, template and config files a pack carries beside its weights.
var sideFiles = []string{"config.json", "generation_config.json", "tokenizer.json", "tiktoken.model", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"}

// inputs lists what Convert reads: the folder, and every file on its own, because a Hugging
// Face cache links shards into a blobs folder elsewhere.
func (c *checkpoint) inputs() []fsguard.Path {
	in := []fsguard.Path{{Label: "--in", Path: c.dir}}
	names := append([]string{"model.safetensors.index.json"}, sideFiles...)
	for _, s := range c.shards {
		names = append(names, s.name)
	}
	for _, n := range names {
		in = append(in, fsguard.Path{Label: "file " + n + " of --in", Path: filepath.Join(c.dir, n)})
	}
	return in
}

// packInputs lists what requant and lz4 read from a packed model: the manifest, the dense
// weights, the side files and every expert set (and each layer file, which may be a link)
// except the set of rebuildBits (0: none), which requant --force is about to replace.
func packInputs(model string, m *format.Manifest, rebuildBits int) []fsguard.Path {
	in := []fsguard.Path{
		{Label: "the manifest of --model", Path: filepath.Join(model, format.ManifestName)},
		{Label: "the dense weights of --model", Path: filepath.Join(model, m.Weights.File)},
	}
	for _, f := range m.Files {
		in = append(in, fsguard.Path{Label: "file " + f.Name + " of --model", Path: filepath.Join(model, f.Name)})
	}
	for _, s := range m.Experts {
		if s.Bits == rebuildBits {
			continue
		}
		label := "the " + bitsName(s.Bits) + " expert set " + s.Dir + " of --model"
		in = append(in, fsguard.Path{Label: label, Path: filepath.Join(model, s.Dir)})
		for _, l := range s.Layers {
			in = append(in, fsguard.Path{Label: label, Path: filepath.Join(model, s.Dir, l.File)})
		}
	}
	return in
}

func bitsName(bits int) string {
	if bits == 16 {
		return "bf16"
	}
	return fmt.Sprintf("%d-bit", bits)
}

// openPack opens a packed model's manifest after checking it is a regular file: format.Open
// reads it with os.ReadFile, which would wait forever on a named pipe.
func openPack(model string) (*format.Manifest, error) {
	if err := fsguard.RequireRegular(filepath.Join(model, format.ManifestName)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return format.Open(model) // its message says what is missing
		}
		return nil, err
	}
	return format.Open(model)
}
