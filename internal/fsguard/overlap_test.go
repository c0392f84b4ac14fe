package fsguard

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tree builds:
//
//	root/src/a.bin, root/src/sub/, root/other/, root/src2/
//	root/link-src -> src, root/link-root -> root (absolute), root/other/up -> ../src/sub
func tree(t *testing.T) string {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"src/sub", "other", "src2"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "src/a.bin"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{"link-src": "src", "link-root": root, "other/up": "../src/sub", "dangling": "src/not-yet"}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCheckOutput(t *testing.T) {
	root := tree(t)
	t.Chdir(root)
	cases := []struct {
		out, in string
		want    string // relation, or "" for allowed
	}{
		{"src", "src", "is"},
		{"src/", "src", "is"},
		{"src", "src/", "is"},
		{"./src/../src", "src", "is"},
		{filepath.Join(root, "src"), "src", "is"},
		{"src", filepath.Join(root, "src") + "/", "is"},
		{"link-src", "src", "is"},
		{"src", "link-src", "is"},
		{"link-root/src", "src", "is"},
		{".", "src", "contains"},
		{root, "src", "contains"},
		{"src/..", "src", "contains"},
		{"src/sub/../..", "src", "contains"},
		{"link-root", "src", "contains"},
		{"/", "src", "contains"},
		{"src/sub", "src", "lies inside"},
		{"src/new", "src", "lies inside"},
		{"src/new/deeper/still", "src", "lies inside"},
		{"link-src/new", "src", "lies inside"},
		{"other/up", "src", "lies inside"},
		{"other/up/new", "src", "lies inside"},
		{"link-root/src/x/y", "src", "lies inside"},
		{"src/a.bin", "src/a.bin", "is"},
		{"src", "src/a.bin", "contains"},
		{"src/a.bin/x", "src/a.bin", "lies inside"},
		// Apart: siblings, a name sharing a prefix, a folder beside the input.
		{"other", "src", ""},
		{"other/new", "src", ""},
		{"src2", "src", ""},
		{"src-packed", "src", ""},
		{"src2/x", "src", ""},
		{"../elsewhere", "src", ""},
		{"src", "other", ""},
	}
	for _, c := range cases {
		err := CheckOutput(Path{"--out", c.out}, Path{"--in", c.in})
		var oe *OverlapError
		switch {
		case c.want == "" && err != nil:
			t.Errorf("out %q in %q: refused (%v), want allowed", c.out, c.in, err)
		case c.want != "" && !errors.As(err, &oe):
			t.Errorf("out %q in %q: %v, want refused (%s)", c.out, c.in, err, c.want)
		case c.want != "" && oe.Relation != c.want:
			t.Errorf("out %q in %q: relation %q, want %q", c.out, c.in, oe.Relation, c.want)
		case c.want != "":
			msg := err.Error()
			if !strings.Contains(msg, "--out "+c.out) || !strings.Contains(msg, "--in "+c.in) || !strings.Contains(msg, "choose an output outside") {
				t.Errorf("out %q in %q: message %q does not name both paths and what to do", c.out, c.in, msg)
			}
		}
	}
}

// A dangling symlink resolves nowhere yet; the check must not fail on it, and a later
// command that follows it fails on its own (rename cannot replace a symlink with a folder).
func TestCheckOutputDanglingLink(t *testing.T) {
	root := tree(t)
	if err := CheckOutput(Path{"--out", filepath.Join(root, "dangling")}, Path{"--in", filepath.Join(root, "other")}); err != nil {
		t.Fatal(err)
	}
}

// Several inputs: any one overlapping is enough, and the message names that one.
func TestCheckOutputSeveralInputs(t *testing.T) {
	root := tree(t)
	err := CheckOutput(Path{"--out", filepath.Join(root, "other")},
		Path{"--in", filepath.Join(root, "src")}, Path{"shard b of --in", filepath.Join(root, "other/b.bin")})
	if err == nil || !strings.Contains(err.Error(), "shard b of --in") {
		t.Fatalf("got %v, want the shard named", err)
	}
}

// Names that differ but are one directory (as bind mounts or a case-insensitive file system
// give) are caught by identity; unresolved symlinks stand in for them here.
func TestRelationByIdentity(t *testing.T) {
	root := tree(t)
	alias := filepath.Join(root, "link-src")
	src := filepath.Join(root, "src")
	r := func(p string) resolved { return resolved{path: p, existing: p} }
	cases := []struct {
		out, in resolved
		want    string
	}{
		{r(alias), r(src), "is"},
		{r(filepath.Join(alias, "sub")), r(src), "lies inside"},
		{resolved{path: filepath.Join(alias, "new"), existing: alias}, r(src), "lies inside"},
		{r(filepath.Join(root, "link-root")), r(src), "contains"},
		{r(filepath.Join(root, "other")), r(src), ""},
	}
	for _, c := range cases {
		if got := relation(c.out, c.in); got != c.want {
			t.Errorf("relation(%s, %s) = %q, want %q", c.out.path, c.in.path, got, c.want)
		}
	}
}
