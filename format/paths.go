package format

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Every file a manifest names is read relative to the model directory, so a name is the one
// place a hostile manifest could send a reader elsewhere ("../../..", "/etc"). Validate accepts
// only the names the packer writes; Open also refuses a file whose symlinks lead out of the
// directory.

// plainName reports whether n names one entry directly inside a directory.
func plainName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, "/\\\x00") && filepath.IsLocal(n)
}

// validatePaths checks every name in the manifest: weights and layer files have fixed names
// (checked with their layouts), each expert set lives in the directory its bit width implies,
// and side files are plain, distinct file names.
func validatePaths(m *Manifest) error {
	bits := map[int]bool{}
	for i := range m.Experts {
		s := &m.Experts[i]
		if bits[s.Bits] {
			return fmt.Errorf("two expert sets of %d bits", s.Bits)
		}
		bits[s.Bits] = true
		want := ExpertSetDir(s.Bits, m.Experts[0].Bits)
		if s.Dir != want {
			return fmt.Errorf("expert set %d (%d-bit) has dir %q, want %q", i, s.Bits, s.Dir, want)
		}
	}
	names := map[string]bool{}
	for _, f := range m.Files {
		if !plainName(f.Name) {
			return fmt.Errorf("side file name %q is not a plain file name", f.Name)
		}
		if names[f.Name] {
			return fmt.Errorf("side file %q is listed twice", f.Name)
		}
		if f.Size < 0 {
			return fmt.Errorf("side file %s has size %d", f.Name, f.Size)
		}
		names[f.Name] = true
	}
	return nil
}

// Paths lists every file the manifest names, relative to the model directory.
func (m *Manifest) Paths() []string {
	out := []string{m.Weights.File}
	for _, s := range m.Experts {
		for _, l := range s.Layers {
			out = append(out, filepath.Join(s.Dir, l.File))
		}
	}
	for _, f := range m.Files {
		out = append(out, f.Name)
	}
	return out
}

// CheckInside reports an error when rel, a path inside dir, resolves through symlinks to a file
// outside dir. A missing file is not its concern (the size checks report it).
func CheckInside(dir, rel string) error {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("packed model: %w", err)
	}
	real, err := filepath.EvalSymlinks(filepath.Join(dir, rel))
	if err != nil {
		return nil
	}
	if r, err := filepath.Rel(root, real); err != nil || !filepath.IsLocal(r) {
		return fmt.Errorf("packed model: %s resolves (through a symlink) to %s, outside the model directory %s: a packed model must hold its own files (copy them in)", rel, real, dir)
	}
	return nil
}
