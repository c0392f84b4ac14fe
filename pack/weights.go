package pack

import (
	"bufio"
	"fmt"

	"github.com/fmoe/fmoe/format"
)

// weightsWriter appends aligned ranges to model_weights.bin.
type weightsWriter struct {
	f    outFile
	bw   *bufio.Writer
	path string
	off  int64
}

var zeros [format.ExpertAlign]byte

func newWeightsWriter(f outFile, path string) *weightsWriter {
	return &weightsWriter{f: f, bw: bufio.NewWriterSize(f, 4<<20), path: path}
}

// put writes the concatenation of parts as one aligned range and returns its span.
func (w *weightsWriter) put(parts ...[]byte) (format.Span, error) {
	if pad := alignUp(w.off, format.WeightsAlign) - w.off; pad > 0 {
		if _, err := w.bw.Write(zeros[:pad]); err != nil {
			return format.Span{}, fmt.Errorf("writing %s: %w", w.path, err)
		}
		w.off += pad
	}
	s := format.Span{Offset: w.off}
	for _, p := range parts {
		if _, err := w.bw.Write(p); err != nil {
			return format.Span{}, fmt.Errorf("writing %s: %w", w.path, err)
		}
		s.CRC32C = format.UpdateCRC32C(s.CRC32C, p)
		s.Size += int64(len(p))
	}
	w.off += s.Size
	return s, nil
}

func (w *weightsWriter) finish() error {
	if err := w.bw.Flush(); err != nil {
		w.f.Close()
		return fmt.Errorf("writing %s: %w", w.path, err)
	}
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		return fmt.Errorf("syncing %s: %w", w.path, err)
	}
	return w.f.Close()
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }
