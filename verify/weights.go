package verify

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/fmoe/fmoe/format"
)

// wspan is one checksummed range of model_weights.bin.
type wspan struct {
	tensor string
	part   string
	span   format.Span
}

func (w wspan) label() string { return w.tensor + " " + w.part }

// segment is a contiguous range of model_weights.bin checked by one worker: its spans and the
// padding around them.
type segment struct {
	start, end int64
	spans      []wspan
}

// segmentBytes is the size a weights segment grows to before a new one starts: large enough
// that every read is long and sequential, small enough that a 5.5 GB file keeps every worker busy
// beside the expert files.
const segmentBytes = 256 << 20

// weightSegments splits [0, limit) at span boundaries. Spans that end beyond limit (a truncated
// file) are returned separately so they can be reported rather than read.
func weightSegments(m *format.Manifest, limit int64) (segs []segment, missing []wspan) {
	var spans []wspan
	for i := range m.Tensors {
		t := &m.Tensors[i]
		for _, s := range t.Spans() {
			spans = append(spans, wspan{t.Name, s.Part, s.Span})
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].span.Offset < spans[j].span.Offset })
	cur := segment{}
	end := limit // where readable bytes stop: the first span cut short, or the file's end
	for _, s := range spans {
		if s.span.End() > limit {
			missing = append(missing, s)
			end = min(end, s.span.Offset)
			continue
		}
		if s.span.Offset-cur.start >= segmentBytes && len(cur.spans) > 0 {
			cur.end = s.span.Offset
			segs = append(segs, cur)
			cur = segment{start: s.span.Offset}
		}
		cur.spans = append(cur.spans, s)
	}
	cur.end = end
	if cur.end > cur.start {
		segs = append(segs, cur)
	}
	return segs, missing
}

// checkSegment streams one segment through buf, checksumming each span and checking that the
// bytes between spans are zero.
func (w *worker) checkSegment(dir string, seg segment) {
	name := format.WeightsName
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		w.c.add(Problem{Check: "io", File: name, Message: err.Error()})
		return
	}
	defer f.Close()
	crcs := make([]uint32, len(seg.spans))
	i := 0 // next span not finished
	pos := seg.start
	for pos < seg.end {
		n := min(int64(len(w.buf)), seg.end-pos)
		chunk := w.buf[:n]
		if _, err := f.ReadAt(chunk, pos); err != nil {
			w.c.add(Problem{Check: "io", File: name, Offset: int64p(pos), Message: fmt.Sprintf("reading %d bytes at %d: %v", n, pos, err)})
			return
		}
		w.c.progress(n)
		base := pos
		for pos < base+n {
			if i < len(seg.spans) && pos >= seg.spans[i].span.Offset {
				s := seg.spans[i]
				end := min(s.span.End(), base+n)
				crcs[i] = format.UpdateCRC32C(crcs[i], chunk[pos-base:end-base])
				pos = end
				if pos == s.span.End() {
					w.finishSpan(s, crcs[i])
					i++
				}
				continue
			}
			next := seg.end
			if i < len(seg.spans) {
				next = seg.spans[i].span.Offset
			}
			end := min(next, base+n)
			if off := firstNonZero(chunk[pos-base : end-base]); off >= 0 {
				w.paddingProblem(seg, i, pos+int64(off), chunk[pos-base+int64(off)])
			}
			pos = end
		}
	}
}

func (w *worker) finishSpan(s wspan, got uint32) {
	w.c.tensorDone()
	if got == s.span.CRC32C {
		return
	}
	p := Problem{Check: "checksum", File: format.WeightsName, Tensor: s.tensor, Part: s.part,
		Message: fmt.Sprintf("tensor %s %s [%d, %d): checksum mismatch (manifest %08x, file %08x)", s.tensor, s.part, s.span.Offset, s.span.End(), s.span.CRC32C, got)}
	// Locating walks the syndrome once per byte; skip it for ranges so large it would rival the read.
	if s.span.Size <= 1<<30 {
		switch c := locateByteError(s.span.CRC32C, got, s.span.Size, 2); len(c) {
		case 0:
			p.Message += "; more than one byte is damaged"
		case 1:
			p.Offset = int64p(s.span.Offset + c[0].Offset)
			p.Message += fmt.Sprintf("; a single damaged byte at file offset %d (byte %d of the %s)", *p.Offset, c[0].Offset, s.part)
		default:
			p.Message += "; the damage could be one byte at several offsets"
		}
	}
	w.c.add(p)
}

// paddingProblem reports a non-zero byte between spans, naming its neighbours.
func (w *worker) paddingProblem(seg segment, next int, off int64, b byte) {
	where := "before the first tensor"
	if next > 0 {
		where = "after " + seg.spans[next-1].label()
	}
	if next < len(seg.spans) {
		where += ", before " + seg.spans[next].label()
	}
	w.c.add(Problem{Check: "padding", File: format.WeightsName, Offset: int64p(off),
		Message: fmt.Sprintf("padding byte at offset %d is 0x%02x, want 0 (%s)", off, b, where)})
}

// firstNonZero returns the index of the first non-zero byte, or -1. It tests eight bytes at a
// time: expert padding in a small-hidden-size pack can be most of the file.
func firstNonZero(b []byte) int {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:]) != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		if b[i] != 0 {
			return i
		}
	}
	return -1
}
