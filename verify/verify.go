// Package verify checks a packed model directory (docs/format.md): the manifest's checksum,
// version and schema, every range against its file, and the CRC-32C of every dense tensor and
// every expert block, reading each byte once with a bounded pool of readers. With a source
// checkpoint it also compares the pack with what it was made from: bytes equal where packing is
// lossless, within quant.ErrorBound where it quantised.
package verify

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/partial"
)

// Options control Run.
type Options struct {
	Model string
	// Source is the checkpoint the pack was made from; empty skips the comparison.
	Source string
	// Workers is how many files are read at once; 0 means DefaultWorkers.
	Workers  int
	Progress io.Writer // progress bar; nil is silent
	Log      io.Writer // notes; nil discards
}

// DefaultWorkers keeps a few reads in flight even on a two-core machine: NVMe needs queue depth
// to reach its rated speed, and CRC-32C (SSE4.2/ARMv8 CRC) runs at several GB/s per core, so
// the readers wait on the disk, not on the CPU.
func DefaultWorkers() int { return max(4, runtime.NumCPU()) }

// Report is the outcome of a verification; it marshals as the --json output.
type Report struct {
	Model    string   `json:"model"`
	OK       bool     `json:"ok"`
	Manifest *Summary `json:"manifest,omitempty"`
	// Problems lists what is wrong, at most maxProblems of them; ProblemCount counts them all.
	Problems     []Problem     `json:"problems"`
	ProblemCount int           `json:"problem_count"`
	Read         ReadStats     `json:"read"`
	Source       *SourceReport `json:"source,omitempty"`
	// Warnings do not fail the verification: partial outputs of interrupted runs beside the
	// model, which take disk space and which the next run of the same command removes.
	Warnings []string `json:"warnings,omitempty"`
}

// Summary describes the pack, from its manifest.
type Summary struct {
	Version    int          `json:"version"`
	CreatedBy  string       `json:"created_by"`
	Layout     string       `json:"source_layout"`
	Layers     int          `json:"layers"`
	Experts    int          `json:"experts"`
	Tensors    int          `json:"tensors"`
	ExpertSets []SetSummary `json:"expert_sets"`
}

// SetSummary describes one expert set.
type SetSummary struct {
	Dir    string `json:"dir"`
	Bits   int    `json:"bits"`
	Stride int64  `json:"stride"`
}

// ReadStats says how much was checksummed and how fast.
type ReadStats struct {
	Files        int     `json:"files"`
	Bytes        int64   `json:"bytes"`
	Tensors      int     `json:"tensors"`
	ExpertBlocks int     `json:"expert_blocks"`
	Workers      int     `json:"workers"`
	Seconds      float64 `json:"seconds"`
	MBPerSec     float64 `json:"mb_per_s"` // 1 MB = 10^6 bytes, as disks are rated
}

// Problem is one thing wrong with the pack, located as precisely as the check allows.
type Problem struct {
	// Check is "manifest", "structure", "checksum", "padding" or "source".
	Check  string `json:"check"`
	File   string `json:"file,omitempty"` // relative to the model directory
	Tensor string `json:"tensor,omitempty"`
	Part   string `json:"part,omitempty"` // data, scales or biases
	Set    string `json:"set,omitempty"`  // expert set directory
	Layer  *int   `json:"layer,omitempty"`
	Expert *int   `json:"expert,omitempty"`
	// Projection is gate_proj, up_proj or down_proj, "padding", or empty when the damage could
	// not be placed inside the block.
	Projection string `json:"projection,omitempty"`
	Offset     *int64 `json:"offset,omitempty"` // byte offset in File, when known
	Message    string `json:"message"`
}

// maxProblems bounds the report when a whole disk is bad; the count stays exact.
const maxProblems = 1000

func (r *Report) add(p Problem) {
	r.ProblemCount++
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, p)
	}
}

func intp(i int) *int       { return &i }
func int64p(i int64) *int64 { return &i }

// Run verifies o.Model. The error is for what stops verification from running at all (no such
// directory, cancelled); everything wrong with the pack is a Problem in the report.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers()
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	st, err := os.Stat(o.Model)
	if err != nil {
		return nil, fmt.Errorf("--model: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("--model %s is not a directory (a packed model is a directory holding %s)", o.Model, format.ManifestName)
	}
	r := &Report{Model: o.Model, Problems: []Problem{}, Warnings: leftovers(o.Model)}
	m, ok := checkManifest(r, o.Model)
	if !ok {
		return r, nil
	}
	r.Manifest = summarize(m)
	var src *sourceCmp
	if o.Source != "" {
		if src, err = openSourceCmp(o.Source, m, r); err != nil {
			return nil, err
		}
		defer src.close()
	}
	files := checkStructure(r, o.Model, m)
	start := time.Now()
	if err := checksumAll(ctx, r, o, m, files, src); err != nil {
		return nil, err
	}
	r.Read.Seconds = time.Since(start).Seconds()
	r.Read.MBPerSec = float64(r.Read.Bytes) / 1e6 / max(r.Read.Seconds, 1e-9)
	r.Read.Workers = o.Workers
	if src != nil {
		if err := src.dense(ctx, o.Model, files.weightsOK); err != nil {
			return nil, err
		}
		r.Source = src.report()
	}
	r.OK = r.ProblemCount == 0
	return r, nil
}

func summarize(m *format.Manifest) *Summary {
	s := &Summary{Version: m.Version, CreatedBy: m.CreatedBy, Layout: m.Source.Layout,
		Layers: m.Config.NumHiddenLayers, Experts: m.Config.NumExperts, Tensors: len(m.Tensors)}
	for _, e := range m.Experts {
		s.ExpertSets = append(s.ExpertSets, SetSummary{Dir: e.Dir, Bits: e.Bits, Stride: e.Stride})
	}
	return s
}

// leftovers names the partial outputs in the model (requant, lz4) and beside it (convert).
func leftovers(model string) []string {
	var w []string
	abs, err := filepath.Abs(model)
	if err != nil {
		return nil
	}
	found := partial.Find(abs)
	for _, p := range partial.Find(filepath.Dir(abs)) {
		if strings.HasPrefix(filepath.Base(p), "."+filepath.Base(abs)+".partial-") {
			found = append(found, p)
		}
	}
	for _, p := range found {
		w = append(w, fmt.Sprintf("%s is the partial output of an interrupted or running fmoe-pack; the next run for the same output removes it once its writer has exited", p))
	}
	return w
}
