package verify

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fmoe/fmoe/format"
)

// requiredFiles are the side files fmoe-run cannot start without.
var requiredFiles = []string{"config.json", "tokenizer.json", "tokenizer_config.json"}

// checkManifest reads, checksums and validates the manifest; nothing else can be trusted until
// it passes, so a failure ends the verification.
func checkManifest(r *Report, dir string) (*format.Manifest, bool) {
	m, err := format.ReadManifest(dir)
	if err != nil {
		check := "manifest"
		if errors.Is(err, os.ErrNotExist) {
			check = "structure"
		}
		r.add(Problem{Check: check, File: format.ManifestName, Message: err.Error()})
		return nil, false
	}
	if err := format.Validate(m); err != nil {
		r.add(Problem{Check: "structure", File: format.ManifestName, Message: err.Error()})
		return nil, false
	}
	return m, true
}

// sizes records what is on disk, so the checksum pass reads only what exists.
type sizes struct {
	weights   int64 // bytes of model_weights.bin that can be read (0 if missing)
	weightsOK bool  // the file has exactly the recorded size
	experts   [][]int64
}

// checkStructure checks every file's presence and size, and reads the side files (small) to
// check their checksums. It reports every problem rather than stopping at the first.
func checkStructure(r *Report, dir string, m *format.Manifest) *sizes {
	sz := &sizes{}
	// Validate has checked every name; a symlink can still lead a name out of the model.
	for _, p := range m.Paths() {
		if err := format.CheckInside(dir, p); err != nil {
			r.add(Problem{Check: "structure", File: p, Message: err.Error()})
		}
	}
	sz.weights, sz.weightsOK = checkFileSize(r, dir, m.Weights.File, m.Weights.Size, nil)
	for _, s := range m.Experts {
		got := make([]int64, len(s.Layers))
		for l, lf := range s.Layers {
			name := filepath.Join(s.Dir, lf.File)
			n, ok := checkFileSize(r, dir, name, lf.Size, &expertLoc{set: s.Dir, layer: l, stride: s.Stride, experts: len(lf.CRC32C)})
			got[l] = n
			_ = ok
		}
		sz.experts = append(sz.experts, got)
	}
	have := map[string]bool{}
	for _, f := range m.Files {
		have[f.Name] = true
		data, err := os.ReadFile(filepath.Join(dir, f.Name))
		switch {
		case err != nil:
			r.add(Problem{Check: "structure", File: f.Name, Message: fmt.Sprintf("side file recorded in the manifest: %v", err)})
		case int64(len(data)) != f.Size:
			r.add(Problem{Check: "structure", File: f.Name, Message: fmt.Sprintf("%d bytes, the manifest records %d", len(data), f.Size)})
		case format.CRC32C(data) != f.CRC32C:
			r.add(Problem{Check: "checksum", File: f.Name, Message: fmt.Sprintf("checksum mismatch (manifest %08x, file %08x)", f.CRC32C, format.CRC32C(data))})
		}
		if err == nil {
			r.Read.Files++
			r.Read.Bytes += int64(len(data))
		}
	}
	for _, name := range requiredFiles {
		if name == "tokenizer.json" && have["tiktoken.model"] {
			continue // Kimi-K2 ships tiktoken.model instead
		}
		if !have[name] {
			r.add(Problem{Check: "structure", File: name, Message: "missing from the manifest's files: fmoe-run needs it (re-pack from a checkpoint that has it)"})
		}
	}
	return sz
}

type expertLoc struct {
	set     string
	layer   int
	stride  int64
	experts int
}

// checkFileSize returns how many bytes of the file can be read (at most want) and whether its
// size is exactly want. A short expert file is reported with the experts it lacks.
func checkFileSize(r *Report, dir, name string, want int64, el *expertLoc) (int64, bool) {
	p := Problem{Check: "structure", File: name}
	if el != nil {
		p.Set, p.Layer = el.set, intp(el.layer)
	}
	st, err := os.Stat(filepath.Join(dir, name))
	if err != nil {
		p.Message = fmt.Sprintf("missing: %v", err)
		r.add(p)
		return 0, false
	}
	if !st.Mode().IsRegular() {
		p.Message = "not a regular file"
		r.add(p)
		return 0, false
	}
	got := st.Size()
	switch {
	case got == want:
		return got, true
	case got > want:
		p.Message = fmt.Sprintf("%d bytes, the manifest records %d (longer than recorded)", got, want)
		r.add(p)
		return want, false
	}
	p.Message = fmt.Sprintf("truncated: %d bytes, the manifest records %d", got, want)
	if el != nil {
		first := got / el.stride
		p.Message += fmt.Sprintf(" (%d experts x stride %d); experts %d..%d are missing or cut short", el.experts, el.stride, first, el.experts-1)
		p.Expert = intp(int(first))
	}
	r.add(p)
	return got, false
}
