package model

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/fmoe/fmoe/format"
)

// Direct I/O (Options.DirectIO) reads experts around the page cache, to
// measure the disk itself or to leave the cache to other work. The format
// aligns every expert block and its stride to format.ExpertAlign (4096),
// and the read buffers come from alignedBuf, so each pread meets O_DIRECT's
// alignment rules without bounce buffers.

// probeDirect reads one aligned block, because some filesystems accept an
// O_DIRECT open and only refuse the reads; Open should fail, not the
// first token.
func probeDirect(f *os.File) error {
	buf := alignedBuf(format.ExpertAlign)
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("model: direct I/O: the filesystem of %s refuses direct reads: %w", f.Name(), err)
	}
	return nil
}

// residency names how expert reads are checked against the page cache
// under Timing, or why they are not.
func (r *expertReader) residency() string {
	switch {
	case r.direct:
		return "not measured: direct I/O bypasses the page cache"
	case r.lz4 != nil:
		return "not measured for the LZ4 copy"
	case !r.probe:
		return noResidency
	}
	return "mincore"
}
