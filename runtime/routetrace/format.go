package routetrace

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
)

// Magic opens every trace file (docs/route-trace.md).
const Magic = "FMOERT01"

const maxHeader = 1 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Encode returns the trace in the file format.
func (tr *Trace) Encode() ([]byte, error) {
	if err := tr.Header.check(); err != nil {
		return nil, fmt.Errorf("routetrace: %w", err)
	}
	if n := tr.Tokens * tr.Layers * tr.K; len(tr.IDs) != n || len(tr.Weights) != n {
		return nil, fmt.Errorf("routetrace: %d ids and %d weights for %d entries", len(tr.IDs), len(tr.Weights), n)
	}
	hdr, err := json.Marshal(tr.Header)
	if err != nil {
		return nil, fmt.Errorf("routetrace: header: %w", err)
	}
	n := len(tr.IDs)
	b := make([]byte, 0, 12+len(hdr)+6*n+4)
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(hdr)))
	b = append(b, hdr...)
	for _, e := range tr.IDs {
		b = binary.LittleEndian.AppendUint16(b, e)
	}
	for _, w := range tr.Weights {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(w))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// Save writes the trace to path through a temporary file renamed when
// complete, so a failed write leaves nothing behind.
func (tr *Trace) Save(path string) error {
	b, err := tr.Encode()
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("routetrace: %w", err)
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("routetrace: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("routetrace: writing %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("routetrace: %w", err)
	}
	return nil
}

// Load reads and checks a trace file.
func Load(path string) (*Trace, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("route trace: %w", err)
	}
	tr, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("route trace %s: %w", path, err)
	}
	return tr, nil
}

// Decode parses and checks a trace in the file format.
func Decode(b []byte) (*Trace, error) {
	if len(b) < 12 || string(b[:8]) != Magic {
		return nil, fmt.Errorf("not a routing trace (want the magic %q at the start; make one with fmoe-pack route-trace)", Magic)
	}
	n := binary.LittleEndian.Uint32(b[8:12])
	if n < 2 || n > maxHeader || int64(n) > int64(len(b)-12) {
		return nil, fmt.Errorf("header length %d: want 2 to %d bytes within the file's %d", n, maxHeader, len(b))
	}
	var h Header
	dec := json.NewDecoder(bytes.NewReader(b[12 : 12+n]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if err := h.check(); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	entries := h.Tokens * h.Layers * h.K
	if want := 12 + int64(n) + 6*int64(entries) + 4; int64(len(b)) != want {
		return nil, fmt.Errorf("%d bytes, want %d for %d tokens × %d layers × k %d (truncated or padded)", len(b), want, h.Tokens, h.Layers, h.K)
	}
	body := b[:len(b)-4]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(b[len(b)-4:]); got != want {
		return nil, fmt.Errorf("checksum mismatch (CRC-32C %08x, the file says %08x): the file is corrupt", got, want)
	}
	tr, _ := New(h)
	ib := body[12+n:]
	wb := ib[2*entries:]
	for i := range tr.IDs {
		tr.IDs[i] = binary.LittleEndian.Uint16(ib[2*i:])
		tr.Weights[i] = math.Float32frombits(binary.LittleEndian.Uint32(wb[4*i:]))
	}
	return tr, tr.validate()
}

// validate checks the entries: ids in range and distinct per (token,
// layer), weights finite and non-negative.
func (tr *Trace) validate() error {
	seen := make([]int, tr.Experts) // token-layer stamp+1 of an id's last use
	for t := 0; t < tr.Tokens; t++ {
		for l := 0; l < tr.Layers; l++ {
			ids, ws := tr.At(t, l)
			stamp := t*tr.Layers + l + 1
			for j, e := range ids {
				if int(e) >= tr.Experts {
					return fmt.Errorf("token %d layer %d: expert id %d out of range [0, %d)", t, l, e, tr.Experts)
				}
				if seen[e] == stamp {
					return fmt.Errorf("token %d layer %d: expert %d chosen twice", t, l, e)
				}
				seen[e] = stamp
				if w := float64(ws[j]); math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
					return fmt.Errorf("token %d layer %d: weight %v of expert %d (want finite, ≥ 0)", t, l, ws[j], e)
				}
			}
		}
	}
	return nil
}
