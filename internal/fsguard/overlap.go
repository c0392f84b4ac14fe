// Package fsguard keeps commands from destroying what they read: an output folder must not be,
// contain or lie inside an input, and inputs must be regular files (a named pipe would block an
// open or read forever).
package fsguard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Path is a path with the name the user knows it by ("--in", "shard x of --in").
type Path struct {
	Label string
	Path  string
}

// OverlapError says why an output was refused.
type OverlapError struct {
	Out, In  Path
	Relation string // "is", "contains" or "lies inside"
}

func (e *OverlapError) Error() string {
	what := map[string]string{
		"is":          "is the same location as",
		"contains":    "contains",
		"lies inside": "lies inside",
	}[e.Relation]
	return fmt.Sprintf("refusing to write %s %s: it %s %s %s, which is read, and writing (or --force) there would destroy it; choose an output outside %s",
		e.Out.Label, e.Out.Path, what, e.In.Label, e.In.Path, e.In.Path)
}

// CheckOutput refuses an output that is, contains or lies inside any of the inputs, after
// resolving symlinks (also for the part of out that does not exist yet: its nearest existing
// ancestor is resolved) and comparing device and inode along both paths, so bind mounts,
// case-insensitive file systems, "..", trailing slashes and relative paths cannot hide an
// overlap. It touches nothing.
func CheckOutput(out Path, inputs ...Path) error {
	ro, err := resolve(out.Path)
	if err != nil {
		return fmt.Errorf("%s %s: %w", out.Label, out.Path, err)
	}
	for _, in := range inputs {
		ri, err := resolve(in.Path)
		if err != nil {
			return fmt.Errorf("%s %s: %w", in.Label, in.Path, err)
		}
		if rel := relation(ro, ri); rel != "" {
			return &OverlapError{Out: out, In: in, Relation: rel}
		}
	}
	return nil
}

// resolved is a path with every existing component's symlinks resolved.
type resolved struct {
	path     string // absolute, clean
	existing string // the longest prefix of path that exists
}

// resolve makes p absolute (lexically, as the commands use it) and resolves the symlinks of its
// nearest existing ancestor; components that do not exist yet are appended unchanged.
func resolve(p string) (resolved, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return resolved{}, err
	}
	cur, rest := abs, ""
	for {
		real, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return resolved{path: filepath.Join(real, rest), existing: real}, nil
		}
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return resolved{}, err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return resolved{path: abs, existing: ""}, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// relation says how out stands to in: "is", "lies inside", "contains" or "" (apart).
func relation(out, in resolved) string {
	switch {
	case out.path == in.path:
		return "is"
	case within(out.path, in.path):
		return "lies inside"
	case within(in.path, out.path):
		return "contains"
	}
	// Different names can still be one directory (bind mounts, case-insensitive or
	// hard-linked names): compare identities along the existing part of each path.
	inInfo, inErr := os.Stat(in.existing)
	if inErr == nil && in.existing == in.path && out.existing != "" && hasAncestor(out.existing, inInfo) {
		if out.existing == out.path {
			if st, err := os.Stat(out.path); err == nil && os.SameFile(st, inInfo) {
				return "is"
			}
		}
		return "lies inside"
	}
	if out.existing == out.path && out.existing != "" && in.existing != "" {
		if outInfo, err := os.Stat(out.path); err == nil && hasAncestor(in.existing, outInfo) {
			if inErr == nil && in.existing == in.path && os.SameFile(inInfo, outInfo) {
				return "is"
			}
			return "contains"
		}
	}
	return ""
}

// within reports whether p lies strictly inside dir.
func within(p, dir string) bool {
	if dir == string(filepath.Separator) {
		return p != dir
	}
	return strings.HasPrefix(p, dir+string(filepath.Separator))
}

// hasAncestor reports whether p or one of its parents is the file described by target.
func hasAncestor(p string, target os.FileInfo) bool {
	for {
		if st, err := os.Stat(p); err == nil && os.SameFile(st, target) {
			return true
		}
		parent := filepath.Dir(p)
		if parent == p {
			return false
		}
		p = parent
	}
}
