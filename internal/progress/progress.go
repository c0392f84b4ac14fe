// Package progress draws byte progress bars on stderr for long work (packing, verifying,
// loading). A nil *Bar is valid and silent, so library code reports progress unconditionally
// and only commands decide whether anyone sees it.
package progress

import (
	"io"

	"github.com/schollz/progressbar/v3"
)

// Bar counts bytes (or items, NewCount) towards a total.
type Bar struct {
	pb *progressbar.ProgressBar
}

// New returns a bar writing to w, or nil (silent) when w is nil.
func New(w io.Writer, total int64, desc string) *Bar {
	if w == nil {
		return nil
	}
	return newBar(w, total, desc, progressbar.OptionShowBytes(true))
}

// NewCount returns a bar counting items named unit ("experts") towards
// total, or nil (silent) when w is nil.
func NewCount(w io.Writer, total int64, desc, unit string) *Bar {
	if w == nil {
		return nil
	}
	return newBar(w, total, desc, progressbar.OptionSetItsString(unit), progressbar.OptionShowIts())
}

func newBar(w io.Writer, total int64, desc string, unit ...progressbar.Option) *Bar {
	return &Bar{pb: progressbar.NewOptions64(total, append([]progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100_000_000), // 100 ms: redraws cost nothing measurable
		progressbar.OptionShowCount(),
		progressbar.OptionOnCompletion(func() { io.WriteString(w, "\n") }),
		progressbar.OptionSetRenderBlankState(true),
	}, unit...)...)}
}

// Add advances the bar by n bytes (items for NewCount).
func (b *Bar) Add(n int64) {
	if b != nil {
		b.pb.Add64(n)
	}
}

// Describe changes the label (e.g. the layer being packed).
func (b *Bar) Describe(s string) {
	if b != nil {
		b.pb.Describe(s)
	}
}

// Finish completes the bar.
func (b *Bar) Finish() {
	if b != nil {
		b.pb.Finish()
	}
}
