package model

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// openDirect opens the packed dir with DirectIO, skipping only when the
// filesystem refuses direct reads (the error says so).
func openDirect(t *testing.T, dir string) *Model {
	t.Helper()
	m, err := Open(dir, Options{DirectIO: true})
	if err != nil {
		if strings.Contains(err.Error(), "refuses") {
			t.Skipf("direct I/O unavailable in %s: %v", dir, err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestDirectIOReadsSameBytes: every expert block read around the page
// cache equals the block read through it, and a forward over direct reads
// gives bit-identical logits. The packs live under os.TempDir(), which on
// the project's machines is a real disk.
func TestDirectIOReadsSameBytes(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("direct I/O is implemented on linux and darwin")
	}
	dir := packed(t, "mlx-4bit", 0)
	buffered := open(t, "mlx-4bit", 0, 0, Options{})
	direct := openDirect(t, dir)
	if !direct.experts.direct || buffered.experts.direct {
		t.Fatal("DirectIO option not passed to the expert reader")
	}
	rb, rd := buffered.experts, direct.experts
	if ok, err := bypassesCache(rd.files[0]); !ok {
		t.Fatalf("expert file opened without bypassing the cache (%v)", err)
	}
	for l := range rb.files {
		for id := range rb.set.Layers[l].CRC32C {
			a, b := rb.read(l, id, nil, false), rd.read(l, id, nil, true)
			if a.err != nil || b.err != nil {
				t.Fatalf("layer %d expert %d: buffered %v, direct %v", l, id, a.err, b.err)
			}
			if !bytes.Equal(a.buf, b.buf) {
				t.Fatalf("layer %d expert %d: direct read differs", l, id)
			}
			if b.pages != 0 || b.n != rb.set.Stride {
				t.Fatalf("direct read probed %d pages, read %d bytes", b.pages, b.n)
			}
		}
	}
	var logits [2][]float32
	for i, m := range []*Model{buffered, direct} {
		s, err := m.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		s.Timing = &Timing{}
		if logits[i], err = s.ForwardAll(timingPrompt); err != nil {
			t.Fatal(err)
		}
		if i == 1 && (s.Timing.Prefill.ProbedReads != 0 || !strings.Contains(s.Timing.Residency, "direct I/O")) {
			t.Errorf("direct reads probed for residency: %d, %q", s.Timing.Prefill.ProbedReads, s.Timing.Residency)
		}
	}
	for i := range logits[0] {
		if logits[0][i] != logits[1][i] {
			t.Fatalf("logit %d: buffered %v, direct %v", i, logits[0][i], logits[1][i])
		}
	}
}

// TestDirectIORefusedClearly: where the filesystem refuses O_DIRECT
// (tmpfs on older kernels), Open fails naming direct I/O, not at the
// first token with a bare EINVAL.
func TestDirectIORefusedClearly(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("tmpfs check is for linux")
	}
	shm, err := os.MkdirTemp("/dev/shm", "fmoe-direct")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	defer os.RemoveAll(shm)
	dst := filepath.Join(shm, "m")
	copyDir(t, packed(t, "mlx-4bit", 0), dst)
	m, err := Open(dst, Options{DirectIO: true})
	if err != nil {
		if !strings.Contains(err.Error(), "direct I/O") {
			t.Fatalf("error does not name direct I/O: %v", err)
		}
		return
	}
	defer m.Close()
	// This kernel's tmpfs takes O_DIRECT: then it must read correctly.
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Forward(timingPrompt); err != nil {
		t.Fatalf("tmpfs accepted O_DIRECT at Open but not in a step: %v", err)
	}
}
