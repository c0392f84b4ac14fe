package pack

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fmoe/fmoe/internal/partial"
)

// outFile is what the packer writes through; tests substitute one that fails (disk full).
type outFile interface {
	io.Writer
	Sync() error
	Close() error
}

func osCreate(path string) (outFile, error) { return os.Create(path) }

// stagedDir is an output directory built under a temporary name beside its final path and
// renamed into place only when complete, so an interrupted or failed pack never leaves a
// directory that looks valid.
type stagedDir struct {
	final     string
	tmp       string
	part      *partial.Dir
	force     bool
	committed bool
}

// newStagedDir first removes what runs for the same output left when they were killed (only
// those provably dead; the rest are named in log), then makes the partial folder.
func newStagedDir(final string, force bool, log io.Writer) (*stagedDir, error) {
	final = filepath.Clean(final)
	if st, err := os.Stat(final); err == nil {
		if !force {
			return nil, fmt.Errorf("output %s already exists (use --force to replace it)", final)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("output %s exists and is not a directory", final)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("output %s: %w", final, err)
	}
	parent := filepath.Dir(final)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	cleanStale(parent, filepath.Base(final), log)
	part, err := partial.Create(parent, filepath.Base(final))
	if err != nil {
		return nil, err
	}
	return &stagedDir{final: final, tmp: part.Path, part: part, force: force}, nil
}

// cleanStale removes the partial outputs of parent/base whose writers are provably dead and
// names the ones it must leave.
func cleanStale(parent, base string, log io.Writer) {
	if log == nil {
		log = io.Discard
	}
	removed, kept := partial.CleanStale(parent, base)
	for _, l := range removed {
		fmt.Fprintf(log, "removed %s, left by an interrupted run (%s)\n", l.Path, l.Reason)
	}
	for _, l := range kept {
		fmt.Fprintf(log, "warning: leaving %s: %s\n", l.Path, l.Reason)
	}
}

// path is where a file of the output lives while it is being written.
func (d *stagedDir) path(parts ...string) string {
	return filepath.Join(append([]string{d.tmp}, parts...)...)
}

// abandon removes everything written so far.
func (d *stagedDir) abandon() { d.part.Abandon() }

// abandonUnlessCommitted is abandon for a deferred call: a finished output stays.
func (d *stagedDir) abandonUnlessCommitted() {
	if !d.committed {
		d.abandon()
	}
}

// commit moves the finished directory into place, replacing an old one only now that the new
// one is complete.
func (d *stagedDir) commit() error {
	// MkdirTemp makes the directory private; a finished pack is as readable as any model.
	if err := os.Chmod(d.tmp, 0o755); err != nil {
		return err
	}
	if err := syncDir(d.tmp); err != nil {
		return err
	}
	var old string
	if _, err := os.Stat(d.final); err == nil {
		old = d.part.OldPath()
		if err := os.Rename(d.final, old); err != nil {
			return fmt.Errorf("replacing %s: %w", d.final, err)
		}
	}
	if err := os.Rename(d.tmp, d.final); err != nil {
		if old != "" {
			os.Rename(old, d.final)
		}
		return fmt.Errorf("moving the finished pack to %s: %w", d.final, err)
	}
	d.committed = true
	if old != "" {
		os.RemoveAll(old)
	}
	d.part.Release()
	return syncDir(filepath.Dir(d.final))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	_ = f.Sync() // not every filesystem syncs directories; the rename is what matters
	return nil
}

// writeFileVia writes data to path through create, syncing it.
func writeFileVia(create func(string) (outFile, error), path string, data []byte) error {
	f, err := create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	return f.Close()
}
