package pack

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/fmoe/fmoe/quant"
)

// nlpodyssey/safetensors, the reader every shard goes through, does not know the FP8 dtypes and
// refuses the whole file ("invalid DType string value"). Its checks are still the ones we want:
// offsets contiguous, each tensor's byte size equal to its dtype size times its shape, no bytes
// left over. An F8_E4M3 element is one byte, exactly as a U8 one, so the library is shown the
// header with every `"F8_E4M3"` dtype value replaced by `"U8"     ` (the same length: JSON
// allows the spaces) and checks the file as it would any other. The header is edited in the
// shard's private copy-on-write mapping (mmap.OpenPrivate): only the header's pages are copied,
// the tensors are the page cache's, the file is never written, and the original bytes are put
// back as soon as the library has read them. The tensors keep their real dtype: it comes from
// our own header parse (parseHeader), not from the library.

var (
	f8Value = []byte(`"` + quant.DTypeF8E4M3 + `"`)
	u8Value = []byte(`"U8"     `)
)

// retypeF8 presents the header of data to the library with its F8_E4M3 dtypes as U8, through
// overwrite (which writes data's bytes), and returns the function that restores them.
func retypeF8(data []byte, overwrite func(off int, b []byte) error) (restore func(), err error) {
	n := binary.LittleEndian.Uint64(data[:8]) // parseHeader has checked it
	offs, err := f8DTypeOffsets(data[8 : 8+n])
	if err != nil {
		return nil, err
	}
	done := 0
	restore = func() {
		for _, o := range offs[:done] {
			_ = overwrite(8+o, f8Value) // undoes a write that succeeded, to the same bytes
		}
	}
	for _, o := range offs {
		if err := overwrite(8+o, u8Value); err != nil {
			restore()
			return nil, fmt.Errorf("reading FP8 tensors: %w", err)
		}
		done++
	}
	return restore, nil
}

// f8DTypeOffsets returns where each tensor's `"F8_E4M3"` dtype value starts in a header that
// parseHeader has accepted (an object of tensor objects).
func f8DTypeOffsets(hdr []byte) ([]int, error) {
	dec := json.NewDecoder(bytes.NewReader(hdr))
	var offs []int
	skip := func() error { var v json.RawMessage; return dec.Decode(&v) }
	if _, err := dec.Token(); err != nil { // {
		return nil, fmt.Errorf("corrupt safetensors header: %v", err)
	}
	for dec.More() {
		name, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("corrupt safetensors header: %v", err)
		}
		if name == "__metadata__" {
			if err := skip(); err != nil {
				return nil, fmt.Errorf("corrupt safetensors header: %v", err)
			}
			continue
		}
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			return nil, fmt.Errorf("corrupt safetensors header: tensor %v is not an object", name)
		}
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("corrupt safetensors header: tensor %v: %v", name, err)
			}
			if key != "dtype" {
				if err := skip(); err != nil {
					return nil, fmt.Errorf("corrupt safetensors header: tensor %v: %v", name, err)
				}
				continue
			}
			v, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("corrupt safetensors header: tensor %v: %v", name, err)
			}
			if v != quant.DTypeF8E4M3 {
				continue
			}
			end := int(dec.InputOffset())
			start := end - len(f8Value)
			if start < 0 || !bytes.Equal(hdr[start:end], f8Value) {
				return nil, fmt.Errorf("safetensors header: tensor %v spells its dtype F8_E4M3 with JSON escapes; fmoe reads it written plainly, as every safetensors writer does", name)
			}
			offs = append(offs, start)
		}
		if _, err := dec.Token(); err != nil { // }
			return nil, fmt.Errorf("corrupt safetensors header: tensor %v: %v", name, err)
		}
	}
	return offs, nil
}
