package pack

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"
)

// FuzzSafetensorsHeader feeds arbitrary files to the shard reader: it must return an error or
// views that lie inside the file, never panic or hang.
func FuzzSafetensorsHeader(f *testing.F) {
	for _, p := range []string{tiny + "hf/model-00019-of-00034.safetensors", tiny + "mlx-4bit/model-00001-of-00003.safetensors"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data[:min(len(data), 4096)])
	}
	f.Add(binary.LittleEndian.AppendUint64(nil, 2))
	f.Add(append(binary.LittleEndian.AppendUint64(nil, 60), []byte(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}    xxxx`)...))
	f.Add(append(binary.LittleEndian.AppendUint64(nil, 64), []byte(`{"a":{"dtype":"F8_E4M3","shape":[2,2],"data_offsets":[0,4]}}    xxxx`)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, start, err := parseHeader(data)
		if err != nil {
			return
		}
		orig := bytes.Clone(data)
		views, err := sliceTensors(data, entries, func(off int, b []byte) error { copy(data[off:], b); return nil })
		if !bytes.Equal(data, orig) {
			t.Fatal("the file's bytes differ after reading it (an FP8 header retype was not undone)")
		}
		if err != nil {
			return
		}
		for _, e := range entries {
			if int64(len(views[e.Name])) != e.Offsets[1]-e.Offsets[0] || start+e.Offsets[1] > int64(len(data)) {
				t.Fatalf("tensor %s: view of %d bytes for offsets %v", e.Name, len(views[e.Name]), e.Offsets)
			}
		}
	})
}
