package pack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/fsguard"
	"github.com/fmoe/fmoe/internal/partial"
	"github.com/fmoe/fmoe/internal/progress"
	"github.com/fmoe/fmoe/quant"
)

// DefaultRequantRule is the rule the quant package's study (quant/study_test.go,
// docs/quantization.md) measured best for 4 -> 2 bit: least squares is never worse than MLX's
// rule or min/max on any group, and clearly better on the synthetic 397B experts.
const DefaultRequantRule = "lsq"

// RequantOptions control Requant.
type RequantOptions struct {
	Model string
	Bits  int    // target bits, below the pack's own (2 for a 4-bit pack)
	Rule  string // quant rule name; "" means DefaultRequantRule
	// Force replaces an existing set at Bits; without it Requant refuses to touch one.
	Force    bool
	Workers  int // 0 means one per CPU
	Progress io.Writer
	Log      io.Writer

	// afterBlock runs after each expert is requantised; tests fail or cancel runs through it.
	afterBlock func(layer, expert int) error
}

// RequantStats summarises a requantisation.
type RequantStats struct {
	Dir               string
	Bits              int
	Rule              string
	Experts           int
	BytesIn, BytesOut int64
	Elapsed           time.Duration
}

// Requant writes a lower-bit copy of the pack's routed experts (packed_experts_2bit/ for a
// 4-bit pack) and records it in the manifest. The set is written into a temporary directory
// beside the model and renamed into place, then the manifest is replaced through a temporary
// file and a rename: an interrupted or failing run leaves the model as it was, without a
// partial set.
func Requant(ctx context.Context, o RequantOptions) (*RequantStats, error) {
	start := time.Now()
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Rule == "" {
		o.Rule = DefaultRequantRule
	}
	rule, err := quant.ParseRule(o.Rule)
	if err != nil {
		return nil, fmt.Errorf("--rule: %w", err)
	}
	m, err := openPack(o.Model)
	if err != nil {
		return nil, err
	}
	src := &m.Experts[0]
	if err := checkRequantBits(src, o.Bits); err != nil {
		return nil, err
	}
	group := src.Projections[0].GroupSize
	set, err := expertSetLayout(&m.Config, o.Bits, group)
	if err != nil {
		return nil, err
	}
	set.Dir = format.ExpertSetDir(o.Bits, src.Bits)
	set.SetRule(rule.String())
	final := filepath.Join(o.Model, set.Dir)
	if err := fsguard.CheckOutput(fsguard.Path{Label: "the requantised set", Path: final}, packInputs(o.Model, m, o.Bits)...); err != nil {
		return nil, err
	}
	if err := clearOldSet(m, o, set.Dir, final); err != nil {
		return nil, err
	}
	cleanStale(o.Model, set.Dir, o.Log)
	part, err := partial.Create(o.Model, set.Dir)
	if err != nil {
		return nil, fmt.Errorf("requant: %w", err)
	}
	tmp := part.Path
	committed := false
	defer func() {
		if !committed {
			part.Abandon()
		}
	}()
	rq := &requanter{ctx: ctx, o: o, rule: rule, m: m, src: src, dst: &set, tmp: tmp,
		bar: progress.New(o.Progress, int64(len(src.Layers))*int64(m.Config.NumExperts)*src.Stride, fmt.Sprintf("requant %d->%d bit", src.Bits, o.Bits))}
	for l := range src.Layers {
		lf, err := rq.layer(l)
		if err != nil {
			return nil, err
		}
		set.Layers = append(set.Layers, lf)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	syncDir(tmp)
	m.Experts = append(m.Experts, set)
	if err := format.Validate(m); err != nil {
		return nil, fmt.Errorf("internal error: the requantised set does not validate: %w", err)
	}
	data, err := format.Encode(m)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("requant interrupted: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("moving the finished set into place: %w", err)
	}
	committed = true
	part.Release()
	// From here the set is complete on disk; until the manifest names it, the model is the old
	// model with an unreferenced directory, which the next run replaces.
	if err := replaceManifest(o.Model, data); err != nil {
		os.RemoveAll(final)
		return nil, err
	}
	rq.bar.Finish()
	return &RequantStats{Dir: final, Bits: o.Bits, Rule: rule.String(), Experts: rq.experts,
		BytesIn: rq.bytesIn, BytesOut: int64(len(set.Layers)) * int64(m.Config.NumExperts) * set.Stride, Elapsed: time.Since(start)}, nil
}

func checkRequantBits(src *format.ExpertSet, bits int) error {
	if src.Bits == 16 {
		return fmt.Errorf("requant: the pack's experts are bf16; pack the checkpoint with `fmoe-pack convert --bits %d` instead (quantising once is more accurate)", bits)
	}
	if bits != 2 && bits != 4 && bits != 8 {
		return fmt.Errorf("--bits %d: want 2, 4 or 8", bits)
	}
	if bits >= src.Bits {
		return fmt.Errorf("--bits %d: the pack's experts are %d-bit; requant only lowers the bit width", bits, src.Bits)
	}
	return nil
}

// clearOldSet makes way for the new set. A set the manifest records is replaced only with
// Force, and then dropped from the manifest first, so a crash leaves a model without the set
// rather than a manifest describing files that changed. A directory the manifest does not
// record is a leftover of a run that died before its manifest was written; it is removed.
func clearOldSet(m *format.Manifest, o RequantOptions, dir, path string) error {
	dropped := false
	if i := slices.IndexFunc(m.Experts, func(s format.ExpertSet) bool { return s.Bits == o.Bits }); i >= 0 {
		if !o.Force {
			return fmt.Errorf("requant: %s already has a %d-bit expert set (%s); use --force to rebuild it", o.Model, o.Bits, m.Experts[i].Dir)
		}
		m.Experts = slices.Delete(m.Experts, i, i+1)
		data, err := format.Encode(m)
		if err != nil {
			return err
		}
		if err := replaceManifest(o.Model, data); err != nil {
			return err
		}
		fmt.Fprintf(o.Log, "removed the old %d-bit set from the manifest; rebuilding %s\n", o.Bits, dir)
		dropped = true
	}
	if _, err := os.Lstat(path); err == nil {
		if dropped {
			fmt.Fprintf(o.Log, "removing the old set's files in %s\n", path)
		} else {
			// Requant renames the finished set into place and then writes the manifest: a
			// set on disk that the manifest lacks is a run that died between the two.
			fmt.Fprintf(o.Log, "removing %s: the manifest does not record it (a run was interrupted after writing the set, before recording it)\n", path)
		}
		if err := os.RemoveAll(path); err != nil {
			return fmt.Errorf("requant: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("requant: %w", err)
	}
	return nil
}

// replaceManifest writes the manifest atomically: a synced temporary file renamed over it.
func replaceManifest(dir string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+format.ManifestName+".tmp-")
	if err != nil {
		return fmt.Errorf("writing the manifest: %w", err)
	}
	tmp := f.Name()
	if err := writeFileVia(func(string) (outFile, error) { return f, nil }, tmp, data); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, format.ManifestName)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replacing the manifest: %w", err)
	}
	return syncDir(dir)
}

type requanter struct {
	ctx      context.Context
	o        RequantOptions
	rule     quant.Rule
	m        *format.Manifest
	src, dst *format.ExpertSet
	tmp      string
	bar      *progress.Bar
	experts  int
	bytesIn  int64
}

// layer requantises one layer file: blocks are read and converted in parallel, a batch at a
// time, and written in order.
func (rq *requanter) layer(l int) (format.ExpertLayer, error) {
	E := rq.m.Config.LayerExperts(l) // 0 for a dense layer: an empty file
	name := format.LayerFileName(l)
	lf := format.ExpertLayer{File: name, Size: int64(E) * rq.dst.Stride, CRC32C: make([]uint32, E)}
	in, err := fsguard.OpenRegular(filepath.Join(rq.o.Model, rq.src.Dir, rq.src.Layers[l].File))
	if err != nil {
		return lf, fmt.Errorf("requant: %w", err)
	}
	defer in.Close()
	path := filepath.Join(rq.tmp, name)
	out, err := os.Create(path)
	if err != nil {
		return lf, fmt.Errorf("requant: %w", err)
	}
	defer out.Close()
	bw := bufio.NewWriterSize(out, 1<<20)
	batch := rq.o.Workers
	srcBufs, dstBufs := make([][]byte, batch), make([][]byte, batch)
	for i := range batch {
		srcBufs[i], dstBufs[i] = make([]byte, rq.src.Stride), make([]byte, rq.dst.Stride)
	}
	for e0 := 0; e0 < E; e0 += batch {
		if err := rq.ctx.Err(); err != nil {
			return lf, fmt.Errorf("requant interrupted: %w", err)
		}
		n := min(batch, E-e0)
		errs := make(chan error, n)
		for i := range n {
			go func() { errs <- rq.block(in, l, e0+i, srcBufs[i], dstBufs[i]) }()
		}
		var first error
		for range n {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		if first != nil {
			return lf, first
		}
		for i := range n {
			lf.CRC32C[e0+i] = format.CRC32C(dstBufs[i])
			if _, err := bw.Write(dstBufs[i]); err != nil {
				return lf, fmt.Errorf("writing %s: %w", path, err)
			}
			rq.experts++
			rq.bytesIn += rq.src.Stride
			rq.bar.Add(rq.src.Stride)
			if rq.o.afterBlock != nil {
				if err := rq.o.afterBlock(l, e0+i); err != nil {
					return lf, err
				}
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return lf, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := out.Sync(); err != nil {
		return lf, fmt.Errorf("syncing %s: %w", path, err)
	}
	return lf, out.Close()
}

// block reads expert e of layer l, checks it against the manifest (requantising damaged bytes
// would bake the damage into a set with a valid checksum), and requantises each projection.
func (rq *requanter) block(in *os.File, l, e int, sb, db []byte) error {
	if _, err := in.ReadAt(sb, int64(e)*rq.src.Stride); err != nil {
		return fmt.Errorf("requant: reading layer %d expert %d: %w", l, e, err)
	}
	if got, want := format.CRC32C(sb), rq.src.Layers[l].CRC32C[e]; got != want {
		return fmt.Errorf("requant: %s/%s expert %d: checksum mismatch (manifest %08x, file %08x); run fmoe-verify and re-pack", rq.src.Dir, rq.src.Layers[l].File, e, want, got)
	}
	clear(db) // padding must be zero
	for i := range rq.src.Projections {
		sp, dp := &rq.src.Projections[i], &rq.dst.Projections[i]
		if err := requantProjection(rq.rule, sp, dp, sb, db); err != nil {
			return fmt.Errorf("requant: layer %d expert %d %s: %w", l, e, sp.Name, err)
		}
	}
	return nil
}

func requantProjection(rule quant.Rule, sp, dp *format.Tensor, sb, db []byte) error {
	rows, cols := sp.Shape[0], sp.Shape[1]
	src, err := quant.NewMatrix(rows, cols, sp.Bits, sp.GroupSize)
	if err != nil {
		return err
	}
	dst, err := quant.NewMatrix(rows, cols, dp.Bits, dp.GroupSize)
	if err != nil {
		return err
	}
	if err := quant.DecodeUint32s(sb[sp.Data.Offset:sp.Data.End()], src.Weight); err != nil {
		return err
	}
	if err := quant.DecodeUint16s(sb[sp.Scales.Offset:sp.Scales.End()], src.Scales); err != nil {
		return err
	}
	if err := quant.DecodeUint16s(sb[sp.Biases.Offset:sp.Biases.End()], src.Biases); err != nil {
		return err
	}
	if err := quant.Requant(rule, dst, src); err != nil {
		return err
	}
	if err := quant.EncodeUint32s(dst.Weight, db[dp.Data.Offset:dp.Data.End()]); err != nil {
		return err
	}
	if err := quant.EncodeUint16s(dst.Scales, db[dp.Scales.Offset:dp.Scales.End()]); err != nil {
		return err
	}
	return quant.EncodeUint16s(dst.Biases, db[dp.Biases.Offset:dp.Biases.End()])
}
