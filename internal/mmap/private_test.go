//go:build unix

package mmap

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestOverwriteIsPrivate: an overwrite changes this mapping only; the file, and a fresh
// mapping of it, keep their bytes.
func TestOverwriteIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	orig := bytes.Repeat([]byte("0123456789abcdef"), 1024) // several pages
	if err := os.WriteFile(path, orig, 0o444); err != nil {
		t.Fatal(err)
	}
	f, err := OpenPrivate(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off := os.Getpagesize() - 3 // straddles a page boundary
	if err := f.Overwrite(off, []byte("XYZXYZ")); err != nil {
		t.Fatal(err)
	}
	if got := string(f.Data[off : off+6]); got != "XYZXYZ" {
		t.Errorf("mapping holds %q after the overwrite", got)
	}
	if disk, _ := os.ReadFile(path); !bytes.Equal(disk, orig) {
		t.Error("Overwrite changed the file")
	}
	g, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if !bytes.Equal(g.Data, orig) {
		t.Error("another mapping of the file sees the overwrite")
	}
	if err := f.Overwrite(len(orig)-2, []byte("abc")); err == nil {
		t.Error("an overwrite past the end was accepted")
	}
	if err := g.Overwrite(0, []byte("a")); err == nil {
		t.Error("a shared mapping from Open accepted an overwrite")
	}
}
