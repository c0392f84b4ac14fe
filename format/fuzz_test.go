package format

import (
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
