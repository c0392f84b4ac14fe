package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
)

// damagedPack copies the tiny pack and XORs one byte of file rel at off(manifest).
func damagedPack(t *testing.T, rel string, off func(m *format.Manifest) int64) string {
	t.Helper()
	src, err := tinyPack()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "model")
	if out, err := exec.Command("cp", "-r", src, dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	m, err := format.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, rel)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off(m)] ^= 0x5a
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A damaged pack makes generate fail (the command exits 1) naming the damage and fmoe-verify,
// and prints no text (issue 11: a damaged final norm printed "!!!!" and exited 0).
func TestGenerateRefusesDamagedPack(t *testing.T) {
	for _, c := range []struct {
		name, rel string
		off       func(m *format.Manifest) int64
		want      string
	}{
		{"final norm", format.WeightsName, func(m *format.Manifest) int64 {
			tn, _ := m.Tensor("model.norm.weight")
			return tn.Data.Offset + 6
		}, "tensor model.norm.weight data: checksum mismatch"},
		{"every expert of layer 2", filepath.Join(format.ExpertsDir, format.LayerFileName(2)), nil, "layer 2 expert"},
	} {
		var dir string
		if c.off != nil {
			dir = damagedPack(t, c.rel, c.off)
		} else {
			// One byte in every block, so that whichever experts are routed, one is damaged.
			dir = damagedPack(t, c.rel, func(*format.Manifest) int64 { return 0 })
			m, _ := format.Open(dir)
			set := &m.Experts[0]
			path := filepath.Join(dir, c.rel)
			b, _ := os.ReadFile(path)
			for e := 1; e < m.Config.NumExperts; e++ {
				b[int64(e)*set.Stride+int64(e)] ^= 0x5a
			}
			os.WriteFile(path, b, 0o644)
		}
		out, err := runApp(t, "", "generate", "--model", dir, "--prompt", "Hello", "--tokens", "4", "--backend", "cpu")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "fmoe-verify --model "+dir) {
			t.Errorf("%s: %v, want %q and fmoe-verify", c.name, err, c.want)
		}
		if strings.TrimSpace(out) != "" {
			t.Errorf("%s: printed %q", c.name, out)
		}
	}
}
