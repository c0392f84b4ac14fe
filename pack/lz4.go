package pack

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/pierrec/lz4/v4"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/format/lz4file"
	"github.com/fmoe/fmoe/internal/fsguard"
	"github.com/fmoe/fmoe/internal/partial"
	"github.com/fmoe/fmoe/internal/progress"
)

// The LZ4 copy of an expert set is an experiment kept so it can be rerun
// (docs/negative-results.md): 4-bit weights are close to random bytes and barely compress,
// so decompressing costs more than the bytes it saves. Its layout, and the reader fmoe-run uses,
// are in package format/lz4file.
const (
	lz4Magic      = lz4file.Magic
	lz4Version    = lz4file.Version
	lz4HeaderSize = lz4file.HeaderSize
	lz4EntrySize  = lz4file.EntrySize
	lz4Stored     = lz4file.MethodStored
	lz4Block      = lz4file.MethodBlock
)

// LZ4Dir is the directory of the LZ4 copy of an expert set directory.
func LZ4Dir(setDir string) string { return lz4file.Dir(setDir) }

// LZ4FileName is the LZ4 copy of layer l's expert file.
func LZ4FileName(l int) string { return lz4file.FileName(l) }

// LZ4Options control LZ4.
type LZ4Options struct {
	Model    string
	Bits     int // which expert set to copy; 0 means the pack's own
	Force    bool
	Workers  int // 0 means one per CPU
	Progress io.Writer
	Log      io.Writer

	// forceBlock stores every expert LZ4-encoded even when that makes it larger, so the
	// benchmark measures decompression on content LZ4 cannot shrink.
	forceBlock bool
}

// LZ4Stats summarises a compression run.
type LZ4Stats struct {
	Dir                string
	Experts, Stored    int // Stored: experts kept raw because LZ4 did not shrink them
	RawBytes, LZ4Bytes int64
	Elapsed            time.Duration
}

// LZ4 writes an LZ4-compressed copy of an expert set, one independently decodable block per
// expert with an index per layer file. It writes into a temporary directory inside the model
// and renames it into place when complete.
func LZ4(ctx context.Context, o LZ4Options) (*LZ4Stats, error) {
	start := time.Now()
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	m, err := openPack(o.Model)
	if err != nil {
		return nil, err
	}
	set := &m.Experts[0]
	if o.Bits != 0 {
		if set, err = m.ExpertSet(o.Bits); err != nil {
			return nil, err
		}
	}
	final := filepath.Join(o.Model, LZ4Dir(set.Dir))
	if err := fsguard.CheckOutput(fsguard.Path{Label: "the LZ4 copy", Path: final}, packInputs(o.Model, m, 0)...); err != nil {
		return nil, err
	}
	if _, err := os.Stat(final); err == nil && !o.Force {
		return nil, fmt.Errorf("lz4: %s already exists (use --force to rebuild it)", final)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("lz4: %w", err)
	}
	cleanStale(o.Model, LZ4Dir(set.Dir), o.Log)
	part, err := partial.Create(o.Model, LZ4Dir(set.Dir))
	if err != nil {
		return nil, fmt.Errorf("lz4: %w", err)
	}
	tmp := part.Path
	done := false
	defer func() {
		if !done {
			part.Abandon()
		}
	}()
	st := &LZ4Stats{Dir: final}
	bar := progress.New(o.Progress, int64(len(set.Layers))*int64(m.Config.NumExperts)*set.Stride, "lz4")
	for l := range set.Layers {
		if err := lz4Layer(ctx, o, set, l, filepath.Join(tmp, LZ4FileName(l)), st, bar); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	syncDir(tmp)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("lz4 interrupted: %w", err)
	}
	old := part.OldPath()
	if _, err := os.Stat(final); err == nil {
		if err := os.Rename(final, old); err != nil {
			return nil, fmt.Errorf("lz4: replacing %s: %w", final, err)
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Rename(old, final)
		return nil, fmt.Errorf("lz4: moving the finished copy into place: %w", err)
	}
	done = true
	os.RemoveAll(old)
	part.Release()
	syncDir(o.Model)
	bar.Finish()
	st.Elapsed = time.Since(start)
	return st, nil
}

// lz4Job is one expert being compressed.
type lz4Job struct {
	raw, out []byte
	n        int
	method   uint32
	c        lz4.Compressor
}

func lz4Layer(ctx context.Context, o LZ4Options, set *format.ExpertSet, l int, path string, st *LZ4Stats, bar *progress.Bar) error {
	lf := &set.Layers[l]
	E := len(lf.CRC32C)
	in, err := fsguard.OpenRegular(filepath.Join(o.Model, set.Dir, lf.File))
	if err != nil {
		return fmt.Errorf("lz4: %w", err)
	}
	defer in.Close()
	out, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("lz4: %w", err)
	}
	defer out.Close()
	indexEnd := int64(lz4HeaderSize + lz4EntrySize*E)
	head := make([]byte, indexEnd)
	copy(head, lz4Magic)
	binary.LittleEndian.PutUint32(head[8:], lz4Version)
	binary.LittleEndian.PutUint32(head[12:], uint32(l))
	binary.LittleEndian.PutUint32(head[16:], uint32(E))
	binary.LittleEndian.PutUint64(head[24:], uint64(set.Stride))
	// The index is written last, once the sizes are known; reserve its room now.
	if _, err := out.Write(head); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	jobs := make([]*lz4Job, o.Workers)
	for i := range jobs {
		jobs[i] = &lz4Job{raw: make([]byte, set.Stride), out: make([]byte, lz4.CompressBlockBound(int(set.Stride)))}
	}
	off := indexEnd
	for e0 := 0; e0 < E; e0 += len(jobs) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("lz4 interrupted: %w", err)
		}
		n := min(len(jobs), E-e0)
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { errs[i] = jobs[i].compress(in, set, l, e0+i, o.forceBlock) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		for i := range n {
			j, e := jobs[i], e0+i
			stored := j.out[:j.n]
			if j.method == lz4Stored {
				stored = j.raw
				st.Stored++
			}
			ent := head[lz4HeaderSize+lz4EntrySize*e:]
			binary.LittleEndian.PutUint64(ent[0:], uint64(off))
			binary.LittleEndian.PutUint32(ent[8:], uint32(len(stored)))
			binary.LittleEndian.PutUint32(ent[12:], j.method)
			binary.LittleEndian.PutUint32(ent[16:], format.CRC32C(stored))
			binary.LittleEndian.PutUint32(ent[20:], lf.CRC32C[e])
			if _, err := bw.Write(stored); err != nil {
				return fmt.Errorf("writing %s: %w", path, err)
			}
			off += int64(len(stored))
			st.Experts++
			st.RawBytes += set.Stride
			st.LZ4Bytes += int64(len(stored))
			bar.Add(set.Stride)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := out.WriteAt(head, 0); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	st.LZ4Bytes += indexEnd
	if err := out.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	return out.Close()
}

// compress reads expert e, checks it against the manifest (a damaged block must not get a
// valid-looking compressed copy) and compresses it, keeping it raw when LZ4 does not shrink it.
func (j *lz4Job) compress(in *os.File, set *format.ExpertSet, l, e int, force bool) error {
	if _, err := in.ReadAt(j.raw, int64(e)*set.Stride); err != nil {
		return fmt.Errorf("lz4: reading layer %d expert %d: %w", l, e, err)
	}
	if got, want := format.CRC32C(j.raw), set.Layers[l].CRC32C[e]; got != want {
		return fmt.Errorf("lz4: %s/%s expert %d: checksum mismatch (manifest %08x, file %08x); run fmoe-verify and re-pack", set.Dir, set.Layers[l].File, e, want, got)
	}
	n, err := j.c.CompressBlock(j.raw, j.out)
	if err != nil {
		return fmt.Errorf("lz4: layer %d expert %d: %w", l, e, err)
	}
	j.n, j.method = n, lz4Block
	if n == 0 || n >= len(j.raw) && !force {
		j.method = lz4Stored
	}
	return nil
}
