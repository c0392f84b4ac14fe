package model

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format/formattest"
)

// fmoe-run's Open refuses a re-signed manifest with an offset near 2^63 (it panicked slicing
// the weights, issue 11) or a path out of the model (it followed "../../..").
func TestOpenRefusesHostileManifests(t *testing.T) {
	src := packed(t, "mlx-4bit", 0)
	for _, h := range formattest.HostileEdits() {
		dir := t.TempDir()
		copyDir(t, src, dir)
		formattest.Resign(t, dir, h.Mutate)
		m, err := Open(dir, Options{})
		if err == nil {
			m.Close()
			t.Errorf("%s: Open succeeded", h.Name)
		} else if !strings.Contains(err.Error(), h.Want) {
			t.Errorf("%s: %v, want %q", h.Name, err, h.Want)
		}
	}
}

// A layer file that is a symlink out of the model directory is refused at Open.
func TestOpenRefusesSymlinkOutOfModel(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, packed(t, "hf", 16), dir)
	rel := filepath.Join("packed_experts", "layer_02.bin")
	outside := filepath.Join(t.TempDir(), "layer_02.bin")
	if err := os.Rename(filepath.Join(dir, rel), outside); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, rel)); err != nil {
		t.Fatal(err)
	}
	m, err := Open(dir, Options{})
	if err == nil {
		m.Close()
		t.Fatal("Open followed a symlink out of the model")
	}
	if !strings.Contains(err.Error(), "outside the model directory") || !strings.Contains(err.Error(), rel) {
		t.Errorf("error %v", err)
	}
	// A symlink that stays inside the model is fine.
	if err := os.Rename(outside, filepath.Join(dir, "moved.bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, rel)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..", "moved.bin"), filepath.Join(dir, rel)); err != nil {
		t.Fatal(err)
	}
	m, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("symlink inside the model: %v", err)
	}
	m.Close()
}
