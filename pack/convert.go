// Package pack turns Hugging Face and mlx-community checkpoints into the fmoe packed layout
// (docs/format.md), and writes synthetic checkpoints with real model shapes.
package pack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/fsguard"
	"github.com/fmoe/fmoe/internal/progress"
	"github.com/fmoe/fmoe/quant"
)

// Version goes into the manifest's created_by.
const Version = "fmoe-pack 0.1"

// Options control Convert.
type Options struct {
	In, Out string
	// Bits for routed experts: 2, 4, 8 or 16 (bf16, lossless). 0 means 4, or the source's own
	// bits for an already-quantised checkpoint (which is copied as it is).
	Bits int
	// DenseBits for non-expert matrices of a float source: 4, 8 or 16. 0 means 4 when Bits <= 4
	// and Bits otherwise. Router and shared-expert gates are never below 8.
	DenseBits int
	// Rule is the quantisation rule for float sources: "minmax" (default: every element within
	// half a step), "mlx" (MLX's edge-exact rule, bit-identical to mlx-community conversions) or
	// "lsq" (least squares: lowest RMSE, worst element up to one step; docs/quantization.md).
	Rule     string
	Force    bool
	Workers  int       // 0 means one per CPU
	Progress io.Writer // progress bars; nil is silent
	Log      io.Writer // notes for the user; nil discards

	create func(string) (outFile, error) // tests inject failures here
}

// Stats summarises a conversion.
type Stats struct {
	Tensors, Experts      int
	BytesIn, BytesOut     int64
	Elapsed               time.Duration
	Layout                string
	ExpertBits, DenseBits int
}

type packer struct {
	ctx       context.Context
	o         Options
	ck        *checkpoint
	cfg       *format.Config
	out       *stagedDir
	bar       *progress.Bar
	m         format.Manifest
	stats     Stats
	expBits   int
	denseBits int
	rule      quant.Rule
	unsynced  []unsynced // expert files awaiting their fsync
	specs     []format.TensorSpec
}

// Convert packs the checkpoint in o.In into o.Out.
func Convert(ctx context.Context, o Options) (*Stats, error) {
	start := time.Now()
	p, err := newPacker(ctx, o, openCheckpoint)
	if err != nil {
		return nil, err
	}
	defer p.ck.Close()
	if err := p.begin(); err != nil {
		return nil, err
	}
	defer p.out.abandonUnlessCommitted()
	if err := p.packDense(); err != nil {
		return nil, err
	}
	if err := p.packExperts(); err != nil {
		p.closeUnsynced()
		return nil, err
	}
	return p.finish(start)
}

// newPacker opens the checkpoint in o.In (open maps it, or stands it in for a streaming pack)
// and checks everything that can be checked before the output is created.
func newPacker(ctx context.Context, o Options, open func(string) (*checkpoint, error)) (*packer, error) {
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	if o.create == nil {
		o.create = osCreate
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	// Checked before anything is opened, and again once the shards are known (they may be
	// links to elsewhere): with --force, an output over the source would delete it.
	outPath := fsguard.Path{Label: "--out", Path: o.Out}
	if err := fsguard.CheckOutput(outPath, fsguard.Path{Label: "--in", Path: o.In}); err != nil {
		return nil, err
	}
	ck, err := open(o.In)
	if err != nil {
		return nil, err
	}
	p := &packer{ctx: ctx, o: o, ck: ck, cfg: &ck.config}
	if err := p.check(outPath); err != nil {
		ck.Close()
		return nil, err
	}
	return p, nil
}

func (p *packer) check(outPath fsguard.Path) error {
	ck := p.ck
	if err := fsguard.CheckOutput(outPath, ck.inputs()...); err != nil {
		return err
	}
	if err := checkConfigRanges(filepath.Join(ck.dir, "config.json"), &ck.config); err != nil {
		return err
	}
	if err := checkTokenizer(ck.dir, &ck.config); err != nil {
		return err
	}
	if err := p.resolveBits(); err != nil {
		return err
	}
	if len(ck.skipped) > 0 {
		fmt.Fprintf(p.o.Log, "skipping %s (%d tensors): not used by a text runtime\n", strings.Join(ck.skipped, ", "), ck.skippedCount)
	}
	return nil
}

// begin creates the staged output and the progress bar.
func (p *packer) begin() error {
	out, err := newStagedDir(p.o.Out, p.o.Force, p.o.Log)
	if err != nil {
		return err
	}
	p.out = out
	p.bar = progress.New(p.o.Progress, p.totalSourceBytes(), "packing")
	ck := p.ck
	p.m = format.Manifest{Format: "fmoe", Version: format.Version, CreatedBy: Version,
		Source: format.Source{Layout: ck.layout, Architecture: ck.config.Architecture, NormShifted: ck.normShifted},
		Config: ck.config}
	return nil
}

// finish adds the side files and the manifest, and moves the output into place.
func (p *packer) finish(start time.Time) (*Stats, error) {
	p.reportUnused()
	if err := p.copySideFiles(); err != nil {
		return nil, err
	}
	if err := format.Validate(&p.m); err != nil {
		return nil, fmt.Errorf("internal error: the pack does not validate: %w", err)
	}
	data, err := format.Encode(&p.m)
	if err != nil {
		return nil, err
	}
	if err := writeFileVia(p.o.create, p.out.path(format.ManifestName), data); err != nil {
		return nil, err
	}
	if err := p.ctx.Err(); err != nil {
		return nil, err
	}
	if err := p.out.commit(); err != nil {
		return nil, err
	}
	p.bar.Finish()
	p.stats.Elapsed = time.Since(start)
	p.stats.Layout = p.ck.layout
	p.stats.ExpertBits, p.stats.DenseBits = p.expBits, p.denseBits
	return &p.stats, nil
}

func (p *packer) resolveBits() error {
	o := p.o
	switch o.Rule {
	case "", "minmax":
		p.rule = quant.RuleMinMax
	case "mlx":
		p.rule = quant.RuleMLX
	case "lsq":
		p.rule = quant.RuleLSQ
	default:
		return fmt.Errorf("--rule %q: want minmax, mlx or lsq", o.Rule)
	}
	switch o.Bits {
	case 0, 2, 4, 8, 16:
	default:
		return fmt.Errorf("--bits %d: want 2, 4, 8 or 16", o.Bits)
	}
	switch o.DenseBits {
	case 0, 4, 8, 16:
	default:
		return fmt.Errorf("--dense-bits %d: want 4, 8 or 16", o.DenseBits)
	}
	if q := p.ck.quant; q != nil {
		// Quantised sources are copied as they are: re-quantising a quantised weight only adds error.
		if o.Bits != 0 && o.Bits != q.Bits {
			return fmt.Errorf("--bits %d: %s is already %d-bit quantised and is copied as is; pack without --bits, then use `fmoe-pack requant --bits %d`", o.Bits, p.ck.dir, q.Bits, o.Bits)
		}
		if o.DenseBits != 0 {
			return fmt.Errorf("--dense-bits: %s is already quantised and is copied as is", p.ck.dir)
		}
		p.expBits, p.denseBits = q.Bits, q.Bits
		return nil
	}
	p.expBits = o.Bits
	if p.expBits == 0 {
		p.expBits = 4
	}
	p.denseBits = o.DenseBits
	if p.denseBits == 0 {
		p.denseBits = max(4, p.expBits)
	}
	return nil
}

func (p *packer) totalSourceBytes() int64 {
	var n int64
	for _, t := range p.ck.tensors {
		n += int64(len(t.data))
	}
	return n
}

// copySideFiles copies the tokenizer, template and config files users and the runtime need.
func (p *packer) copySideFiles() error {
	for _, name := range sideFiles {
		data, err := fsguard.ReadRegular(filepath.Join(p.ck.dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("source checkpoint: %w", err)
		}
		if err := writeFileVia(p.o.create, p.out.path(name), data); err != nil {
			return err
		}
		p.m.Files = append(p.m.Files, format.SideFile{Name: name, Size: int64(len(data)), CRC32C: format.CRC32C(data)})
	}
	var missing []string
	has := func(name string) bool {
		return slices.ContainsFunc(p.m.Files, func(f format.SideFile) bool { return f.Name == name })
	}
	if !has("tokenizer.json") && !has("tiktoken.model") {
		missing = append(missing, "tokenizer.json")
	}
	if !has("tokenizer_config.json") {
		missing = append(missing, "tokenizer_config.json")
	}
	if len(missing) > 0 {
		// The weights are still worth packing, but the user must hear now, not from verify.
		fmt.Fprintf(p.o.Log, "warning: %s has no %s: fmoe-run cannot tokenize and fmoe-verify will fail until you copy the model's tokenizer files into the source and pack again\n",
			p.ck.dir, strings.Join(missing, " or "))
	}
	return nil
}

func (p *packer) checkCancelled() error {
	if err := p.ctx.Err(); err != nil {
		return fmt.Errorf("packing interrupted: %w", err)
	}
	return nil
}
