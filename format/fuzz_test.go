package format

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
)

// FuzzDecode feeds arbitrary manifests to the decoder and validator: errors, never panics.
func FuzzDecode(f *testing.F) {
	m := testManifest(f)
	data, err := Encode(m)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"manifest_crc32c":"00000000",}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		_ = Validate(m)
	})
}

// resign replaces data's checksum field with the checksum of the rest, or prepends one when the
// field is missing, so that the fuzzer's mutations reach the parser and Validate instead of
// stopping at the checksum (a hostile manifest is re-signed as easily).
func resign(data []byte) []byte {
	if len(data) < prefixLen || !bytes.HasPrefix(data, []byte(crcPrefix)) {
		body := bytes.TrimPrefix(bytes.TrimSpace(data), []byte("{"))
		data = append([]byte(crcPrefix+"00000000\","), body...)
	}
	out := bytes.Clone(data)
	copy(out[len(crcPrefix):], fmt.Sprintf("%08x", CRC32C(out[prefixLen:])))
	out[prefixLen-2], out[prefixLen-1] = '"', ','
	return out
}

// smallManifest is a two-layer, four-expert manifest: a short seed lets the fuzzer mutate
// more of it per second than the 40 KB tiny-model manifest.
func smallManifest(tb testing.TB) *Manifest {
	c := Config{Architecture: ArchQwen35MoE, HiddenSize: 64, NumHiddenLayers: 2, VocabSize: 32,
		LayerTypes: []string{LinearAttention, FullAttention}, NumAttentionHeads: 2, NumKeyValueHeads: 1, HeadDim: 32,
		RotaryDim: 8, LinearNumKeyHeads: 1, LinearNumValueHeads: 2, LinearKeyHeadDim: 16, LinearValueHeadDim: 32,
		LinearConvKernelDim: 4, NumExperts: 4, NumExpertsPerTok: 2, MoeIntermediateSize: 64, SharedExpertIntermediateSize: 64}
	m := manifestFor(tb, c)
	m.Files = []SideFile{{Name: "config.json", Size: 10}, {Name: "tokenizer.json", Size: 20}}
	if err := Validate(m); err != nil {
		tb.Fatal(err)
	}
	return m
}

// FuzzValidate mutates signed manifests and re-signs them, then checks that Validate either
// refuses the manifest or accepts one that every reader can trust: all ranges inside their
// files (no overflow), layer sizes exact, every path inside the model directory.
func FuzzValidate(f *testing.F) {
	for _, m := range []*Manifest{smallManifest(f), testManifest(f), manifestOf(f, "../testdata/arch/glm4_moe/hf/config.json")} {
		data, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(resign(data))
		if err != nil {
			return
		}
		if Validate(m) != nil {
			return
		}
		checkTrusted(t, m)
	})
}

// checkTrusted asserts what Validate promises its callers.
func checkTrusted(t *testing.T, m *Manifest) {
	t.Helper()
	for _, tn := range m.Tensors {
		for _, s := range tn.Spans() {
			if !s.Span.Within(m.Weights.Size) {
				t.Fatalf("accepted %s %s %+v outside %d bytes", tn.Name, s.Part, s.Span, m.Weights.Size)
			}
		}
	}
	for _, set := range m.Experts {
		for _, p := range set.Projections {
			for _, s := range p.Spans() {
				if !s.Span.Within(set.Stride) {
					t.Fatalf("accepted %s %s %+v outside the %d-byte stride", p.Name, s.Part, s.Span, set.Stride)
				}
			}
		}
		for i, l := range set.Layers {
			n := int64(m.Config.LayerExperts(i)) // 0 for a dense layer
			if l.Size < 0 || l.Size%set.Stride != 0 || l.Size/set.Stride != n || len(l.CRC32C) != int(n) {
				t.Fatalf("accepted %s of %d bytes for %d experts x %d", l.File, l.Size, n, set.Stride)
			}
		}
	}
	for _, p := range m.Paths() {
		if !filepath.IsLocal(p) || filepath.Clean(p) != p {
			t.Fatalf("accepted path %q", p)
		}
	}
}
