package quant

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// stTensor is one tensor of a safetensors file, raw bytes as stored.
type stTensor struct {
	DType string
	Shape []int
	Data  []byte
}

// readSafetensors parses a safetensors file: an 8-byte little-endian header
// length, a JSON header of name -> {dtype, shape, data_offsets}, then data.
func readSafetensors(path string) (map[string]stTensor, error) {
	buf, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(buf) < 8 {
		return nil, fmt.Errorf("%s: too short", path)
	}
	n := binary.LittleEndian.Uint64(buf)
	if n > uint64(len(buf)-8) {
		return nil, fmt.Errorf("%s: header length %d past end", path, n)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(buf[8:8+n], &hdr); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	data := buf[8+n:]
	out := make(map[string]stTensor, len(hdr))
	for name, raw := range hdr {
		if name == "__metadata__" {
			continue
		}
		var e struct {
			DType   string `json:"dtype"`
			Shape   []int  `json:"shape"`
			Offsets [2]int `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, name, err)
		}
		if e.Offsets[0] < 0 || e.Offsets[0] > e.Offsets[1] || e.Offsets[1] > len(data) {
			return nil, fmt.Errorf("%s: %s: bad offsets %v", path, name, e.Offsets)
		}
		out[name] = stTensor{e.DType, e.Shape, data[e.Offsets[0]:e.Offsets[1]]}
	}
	return out, nil
}

// readSafetensorsDir merges every *.safetensors file in dir.
func readSafetensorsDir(t testing.TB, dir string) map[string]stTensor {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no safetensors in %s (%v)", dir, err)
	}
	all := map[string]stTensor{}
	for _, f := range files {
		m, err := readSafetensors(f)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range m {
			if _, dup := all[k]; dup {
				t.Fatalf("%s: tensor %s appears twice", dir, k)
			}
			all[k] = v
		}
	}
	return all
}

func (s stTensor) floats(t testing.TB) []float32 {
	t.Helper()
	size, err := ElemSize(s.DType)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(s.Data)/size)
	if err := DecodeFloats(s.DType, s.Data, out); err != nil {
		t.Fatal(err)
	}
	return out
}
