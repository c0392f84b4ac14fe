// Package formattest helps tests build hostile packs: it rewrites a pack's manifest with a
// valid checksum, as an attacker (or a careless script) would, so that what a test exercises is
// validation rather than the checksum.
package formattest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fmoe/fmoe/format"
)

// Resign reads dir's manifest without validating it, lets mutate change it, and writes it back
// with a fresh checksum.
func Resign(t testing.TB, dir string, mutate func(m *format.Manifest)) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, format.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := format.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	mutate(m)
	if data, err = format.Encode(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, format.ManifestName), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Hostile is a manifest edit that a validating reader must refuse, with a fragment of the
// message it should give.
type Hostile struct {
	Name   string
	Mutate func(m *format.Manifest)
	Want   string
}

// HostileEdits are the edits every command that opens a pack must refuse cleanly (issue 11):
// offsets near 2^63, whose end overflows int64, and paths that leave the model directory.
func HostileEdits() []Hostile {
	const near63 = 1<<63 - 1
	return []Hostile{
		{"dense offset near 2^63", func(m *format.Manifest) { m.Tensors[1].Data.Offset = near63 &^ (format.WeightsAlign - 1) }, "outside the file"},
		{"scales offset near 2^63", func(m *format.Manifest) {
			for i := range m.Tensors {
				if m.Tensors[i].Scales != nil {
					m.Tensors[i].Scales.Offset = near63 &^ (format.WeightsAlign - 1)
					return
				}
			}
		}, "outside the file"},
		{"expert offset near 2^63", func(m *format.Manifest) {
			m.Experts[0].Projections[2].Data.Offset = near63 &^ (format.ExpertAlign - 1)
		}, "outside the file"},
		{"expert dir ../../..", func(m *format.Manifest) { m.Experts[0].Dir = "../../.." }, `dir "../../.."`},
		{"expert dir absolute", func(m *format.Manifest) { m.Experts[0].Dir = "/tmp" }, `dir "/tmp"`},
		{"side file ../config.json", func(m *format.Manifest) { m.Files[0].Name = "../" + m.Files[0].Name }, "not a plain file name"},
	}
}
