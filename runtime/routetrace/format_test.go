package routetrace

import (
	"encoding/binary"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestRoundTrip: Save then Load gives back the same trace, and a
// 1,024-token × 60-layer × K=10 trace loads well under a second.
func TestRoundTrip(t *testing.T) {
	tr, err := Generate(Options{Layers: 60, Experts: 512, K: 10, Tokens: 1024, Seed: 3, Params: Fitted["mix"], Preset: "qwen3.5-397b-a17b"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "t.fmrt")
	if err := tr.Save(path); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	t0 := time.Now()
	got, err := Load(path)
	el := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes loaded in %v", st.Size(), el)
	if !reflect.DeepEqual(got, tr) {
		t.Fatalf("round trip changed the trace: header %+v vs %+v", got.Header, tr.Header)
	}
	if el > time.Second {
		t.Errorf("loading took %v", el)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("Save left %d files", len(ents))
	}
	if err := tr.Save(filepath.Join(t.TempDir(), "no", "such", "dir")); err == nil {
		t.Error("Save into a missing directory: no error")
	}
}

// encodeRaw is the file format written by hand, so bad files can be made
// with a correct checksum.
func encodeRaw(hdr string, ids []uint16, w []float32) []byte {
	b := []byte(Magic)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(hdr)))
	b = append(b, hdr...)
	for _, e := range ids {
		b = binary.LittleEndian.AppendUint16(b, e)
	}
	for _, x := range w {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// TestBadFiles: each malformed file is refused, naming what is wrong.
func TestBadFiles(t *testing.T) {
	const h = `{"layers":1,"experts":8,"k":2,"tokens":2,"model":"recorded","seed":0}`
	ids, w := []uint16{0, 1, 2, 3}, []float32{0.5, 0.5, 0.5, 0.5}
	good := encodeRaw(h, ids, w)
	if _, err := Decode(good); err != nil {
		t.Fatal(err)
	}
	flip := append([]byte(nil), good...)
	flip[len(flip)-10] ^= 1
	trunc := good[:len(good)-6]
	bigHdr := append([]byte(Magic), 0xff, 0xff, 0xff, 0x7f)
	for name, c := range map[string]struct {
		b    []byte
		want string
	}{
		"empty":         {nil, "not a routing trace"},
		"magic":         {append([]byte("FMOERT99"), good[8:]...), "not a routing trace"},
		"header length": {bigHdr, "header length"},
		"header json":   {encodeRaw(`{"layers":1,`, ids, w), "header"},
		"unknown field": {encodeRaw(`{"layers":1,"experts":8,"k":2,"tokens":2,"model":"x","seed":0,"gpu":1}`, ids, w), `unknown field "gpu"`},
		"zero layers":   {encodeRaw(`{"layers":0,"experts":8,"k":2,"tokens":2}`, ids, w), "layers 0"},
		"k > experts":   {encodeRaw(`{"layers":1,"experts":8,"k":9,"tokens":2}`, ids, w), "k 9"},
		"too many":      {encodeRaw(`{"layers":1,"experts":70000,"k":2,"tokens":2}`, ids, w), "experts 70000"},
		"wrapping size": {encodeRaw(`{"layers":4611686018427387904,"experts":8,"k":4,"tokens":2}`, nil, nil), "too many entries"},
		"entries":       {encodeRaw(`{"layers":65536,"experts":8,"k":8,"tokens":4096}`, nil, nil), "too many entries"},
		"size":          {encodeRaw(`{"layers":1,"experts":8,"k":2,"tokens":3}`, ids, w), "truncated or padded"},
		"truncated":     {trunc, "truncated or padded"},
		"checksum":      {flip, "checksum mismatch"},
		"id range":      {encodeRaw(h, []uint16{0, 1, 8, 3}, w), "expert id 8 out of range [0, 8)"},
		"duplicate":     {encodeRaw(h, []uint16{0, 1, 3, 3}, w), "expert 3 chosen twice"},
		"nan weight":    {encodeRaw(h, ids, []float32{0.5, float32(math.NaN()), 0.5, 0.5}), "weight NaN"},
		"negative":      {encodeRaw(h, ids, []float32{0.5, 0.5, -1, 0.5}), "weight -1"},
	} {
		_, err := Decode(c.b)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, c.want)
		}
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.fmrt")
	os.WriteFile(p, flip, 0o644)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("Load of a corrupt file: %v, want the path named", err)
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("Load of a missing file: no error")
	}
}
