package pack

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/nlpodyssey/safetensors"

	"github.com/fmoe/fmoe/quant"
)

// headerEntry is one tensor of a safetensors header as the file states it, before any check.
type headerEntry struct {
	Name    string
	DType   string
	Shape   []int
	Offsets [2]int64
}

// readableDTypes are the dtypes the packer reads; everything else is named in an error.
var readableDTypes = map[string]bool{"BF16": true, "F16": true, "F32": true, "U32": true}

// maxHeader bounds the JSON header so a corrupt length can't make us parse gigabytes.
const maxHeader = 100 << 20

// parseHeader checks a safetensors file's framing and returns its tensors in offset order. It
// gives the precise errors users need (truncated file, corrupt header); the nlpodyssey reader,
// run afterwards, is the authority on the bytes.
func parseHeader(data []byte) ([]headerEntry, int64, error) {
	if len(data) < 8 {
		return nil, 0, fmt.Errorf("%d bytes is too short for a safetensors file (8-byte header length missing)", len(data))
	}
	n := binary.LittleEndian.Uint64(data[:8])
	if n > maxHeader {
		return nil, 0, fmt.Errorf("corrupt safetensors header: header length %d exceeds the %d-byte limit", n, maxHeader)
	}
	if 8+n > uint64(len(data)) {
		return nil, 0, fmt.Errorf("truncated: header length %d but the file has %d bytes", n, len(data))
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data[8 : 8+n]))
	if err := dec.Decode(&raw); err != nil {
		return nil, 0, fmt.Errorf("corrupt safetensors header: %v", err)
	}
	dataStart := int64(8 + n)
	var out []headerEntry
	for name, v := range raw {
		if name == "__metadata__" {
			continue
		}
		var e struct {
			DType   string  `json:"dtype"`
			Shape   []int   `json:"shape"`
			Offsets []int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, 0, fmt.Errorf("corrupt safetensors header: tensor %s: %v", name, err)
		}
		if len(e.Offsets) != 2 || e.Offsets[0] < 0 || e.Offsets[1] < e.Offsets[0] {
			return nil, 0, fmt.Errorf("corrupt safetensors header: tensor %s has data_offsets %v", name, e.Offsets)
		}
		for _, d := range e.Shape {
			if d < 0 {
				return nil, 0, fmt.Errorf("corrupt safetensors header: tensor %s has shape %v", name, e.Shape)
			}
		}
		out = append(out, headerEntry{Name: name, DType: e.DType, Shape: e.Shape, Offsets: [2]int64{e.Offsets[0], e.Offsets[1]}})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Offsets[0] < out[j].Offsets[0] })
	var end int64
	for _, e := range out {
		if e.Offsets[1] > end {
			end = e.Offsets[1]
		}
	}
	if dataStart+end > int64(len(data)) {
		return nil, 0, fmt.Errorf("truncated: tensor data ends at byte %d but the file has %d bytes", dataStart+end, len(data))
	}
	return out, dataStart, nil
}

// sliceTensors checks the file with nlpodyssey/safetensors (offsets contiguous, sizes matching
// dtype x shape, no trailing bytes) and returns a view of each tensor's bytes. overwrite changes
// bytes of data in place, for FP8 files only (fp8_header.go says why).
func sliceTensors(data []byte, entries []headerEntry, overwrite func(off int, b []byte) error) (map[string][]byte, error) {
	hasF8 := false
	for _, e := range entries {
		if e.DType == quant.DTypeF8E4M3 {
			hasF8 = true
		} else if !readableDTypes[e.DType] {
			if _, err := safetensors.ParseDType(e.DType); err != nil {
				// The library can't read this file at all; the caller decides whether the
				// tensor matters and names it.
				return nil, &dtypeError{name: e.Name, dtype: e.DType}
			}
		}
	}
	if hasF8 {
		restore, err := retypeF8(data, overwrite)
		if err != nil {
			return nil, err
		}
		defer restore()
	}
	st, err := safetensors.Deserialize(data)
	if err != nil {
		return nil, fmt.Errorf("invalid safetensors file: %v", err)
	}
	views := make(map[string][]byte, len(entries))
	for _, e := range entries {
		tv, ok := st.Tensor(e.Name)
		if !ok {
			return nil, fmt.Errorf("invalid safetensors file: tensor %s not readable", e.Name)
		}
		views[e.Name] = tv.Data()
	}
	return views, nil
}

type dtypeError struct{ shard, name, dtype string }

func (e *dtypeError) Error() string {
	return fmt.Sprintf("shard %s: tensor %s has dtype %s, which fmoe-pack does not read (supported: BF16, F16, F32, U32 for MLX-quantised weights, and F8_E4M3 for block-scaled FP8 weights)", e.shard, e.name, e.dtype)
}
