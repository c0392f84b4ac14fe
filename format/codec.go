package format

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
)

// Castagnoli is hardware-accelerated on amd64 and arm64 and detects every single-byte change.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C returns the CRC-32C (Castagnoli) of b.
func CRC32C(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// UpdateCRC32C continues a CRC-32C over more bytes.
func UpdateCRC32C(crc uint32, b []byte) uint32 { return crc32.Update(crc, castagnoli, b) }

const crcPrefix = `{"manifest_crc32c":"`

// prefixLen is the length of `{"manifest_crc32c":"XXXXXXXX",`.
const prefixLen = len(crcPrefix) + 8 + 2

// Encode renders the manifest with its self-checksum prefix.
func Encode(m *Manifest) ([]byte, error) {
	body, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return nil, err
	}
	// body is `{\n "format": …}`: splice the checksum field in after the brace.
	rest := append(body[1:], '\n')
	var out bytes.Buffer
	fmt.Fprintf(&out, "%s%08x\",", crcPrefix, CRC32C(rest))
	out.Write(rest)
	return out.Bytes(), nil
}

// Decode checks the checksum, format and version, and parses the manifest. It does not check
// offsets against files: Validate and Open do.
func Decode(data []byte) (*Manifest, error) {
	if len(data) < prefixLen || !bytes.HasPrefix(data, []byte(crcPrefix)) || data[prefixLen-2] != '"' || data[prefixLen-1] != ',' {
		return nil, fmt.Errorf("%s: does not start with the manifest checksum field (not an fmoe manifest, or damaged)", ManifestName)
	}
	want, err := hex.DecodeString(string(data[len(crcPrefix) : len(crcPrefix)+8]))
	if err != nil {
		return nil, fmt.Errorf("%s: manifest checksum is not hex: %w", ManifestName, err)
	}
	got := CRC32C(data[prefixLen:])
	if w := uint32(want[0])<<24 | uint32(want[1])<<16 | uint32(want[2])<<8 | uint32(want[3]); w != got {
		return nil, fmt.Errorf("%s: checksum mismatch (stored %08x, computed %08x): the manifest is damaged", ManifestName, w, got)
	}
	var probe struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	body := append([]byte{'{'}, data[prefixLen:]...)
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestName, err)
	}
	if probe.Format != "fmoe" {
		return nil, fmt.Errorf("%s: format is %q, want \"fmoe\"", ManifestName, probe.Format)
	}
	if probe.Version > Version || probe.Version < 1 {
		return nil, fmt.Errorf("%s: format version %d is not supported by this build (reads version %d): upgrade fmoe or re-pack the model", ManifestName, probe.Version, Version)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestName, err)
	}
	return &m, nil
}

// ReadManifest reads and decodes dir/model_weights.json.
func ReadManifest(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		if st, serr := os.Stat(dir); errors.Is(err, fs.ErrNotExist) || serr != nil || !st.IsDir() {
			return nil, notPacked(dir, err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	m, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return m, nil
}
