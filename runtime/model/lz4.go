package model

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/format/lz4file"
)

// Options.LZ4 reads the experts from the LZ4 copy fmoe-pack lz4 writes
// beside the expert set (docs/negative-results.md): the experiment measured
// end to end. The copy is outside the manifest, so openLZ4 checks it
// against the set (experts, stride, every block's checksum) rather than
// trusting a copy left from an earlier pack.

// openLZ4 opens the LZ4 copy of r.set in the model dir.
func (r *expertReader) openLZ4(dir string) error {
	set := r.set
	ldir := filepath.Join(dir, lz4file.Dir(set.Dir))
	if _, err := os.Stat(ldir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			bits := ""
			if set.Dir != format.ExpertsDir {
				bits = fmt.Sprintf(" --bits %d", set.Bits)
			}
			return fmt.Errorf("model: no LZ4 copy of the experts: %s does not exist (make it with fmoe-pack lz4 --model %s%s)", ldir, dir, bits)
		}
		return fmt.Errorf("model: %w", err)
	}
	for l := range set.Layers {
		z, err := lz4file.Open(ldir, l)
		if err != nil {
			return fmt.Errorf("model: LZ4 copy: %w", err)
		}
		r.lz4 = append(r.lz4, z)
		crc := set.Layers[l].CRC32C
		if z.Experts() != len(crc) || z.Stride() != set.Stride {
			return fmt.Errorf("model: LZ4 copy %s layer %d holds %d experts of %d bytes, the set %s %d of %d; rebuild it with fmoe-pack lz4 --force",
				ldir, l, z.Experts(), z.Stride(), set.Dir, len(crc), set.Stride)
		}
		for e, c := range crc {
			if z.RawCRC32C(e) != c {
				return fmt.Errorf("model: LZ4 copy %s layer %d expert %d was made from other weights than %s (checksum %08x, manifest %08x); rebuild it with fmoe-pack lz4 --force",
					ldir, l, e, set.Dir, z.RawCRC32C(e), c)
			}
		}
	}
	return nil
}

// readLZ4 reads and decompresses expert e.id of layer l into e.buf. Under
// Timing the bytes are those read from disk (the compressed size) and the
// latency includes the decompression, which is the cost being measured.
func (r *expertReader) readLZ4(e *expert, l int, timed bool) *expert {
	var t0 time.Time
	if timed {
		t0 = time.Now()
	}
	if err := r.lz4[l].ReadExpert(e.id, e.buf); err != nil {
		e.err = fmt.Errorf("model: read layer %d expert %d: %w", l, e.id, err)
		return e
	}
	if timed {
		e.dur, e.n = time.Since(t0), r.lz4[l].CompressedSize(e.id)
	}
	if r.checkBlock(e, l); e.err != nil {
		return e
	}
	r.describe(e, l)
	return e
}
