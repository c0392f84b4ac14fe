package verify

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteText prints the report for people: a summary, the source comparison, then every problem.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "model: %s\n", r.Model)
	if m := r.Manifest; m != nil {
		fmt.Fprintf(w, "manifest: version %d, written by %s from a %s checkpoint; %d layers x %d experts, %d dense tensors\n",
			m.Version, m.CreatedBy, m.Layout, m.Layers, m.Experts, m.Tensors)
		for _, s := range m.ExpertSets {
			fmt.Fprintf(w, "expert set: %s (%d-bit, %d bytes per expert)\n", s.Dir, s.Bits, s.Stride)
		}
	}
	if rd := r.Read; rd.Bytes > 0 {
		fmt.Fprintf(w, "checksummed: %d files, %.3f GB in %.2fs = %.0f MB/s with %d readers (%d tensors, %d expert blocks)\n",
			rd.Files, float64(rd.Bytes)/1e9, rd.Seconds, rd.MBPerSec, rd.Workers, rd.Tensors, rd.ExpertBlocks)
	}
	if s := r.Source; s != nil {
		fmt.Fprintf(w, "compared with source %s (%s layout): worst error per tensor kind\n", s.Dir, s.Layout)
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "  kind\tagainst\tmode\tcount\tfailed\tmax |err|\tmax err/bound\tworst at\n")
		for _, k := range s.Kinds {
			ratio := "-"
			if k.Mode == "bound" {
				ratio = fmt.Sprintf("%.3f", k.MaxRatio)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%.3g\t%s\t%s\n", k.Kind, k.Against, k.Mode, k.Count, k.Failed, k.MaxAbs, ratio, k.Worst)
		}
		tw.Flush()
	}
	for _, s := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", s)
	}
	if r.ProblemCount > 0 {
		fmt.Fprintf(w, "problems (%d):\n", r.ProblemCount)
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
		if r.ProblemCount > len(r.Problems) {
			fmt.Fprintf(w, "  ... and %d more\n", r.ProblemCount-len(r.Problems))
		}
		fmt.Fprintf(w, "FAILED: %d problem(s)\n", r.ProblemCount)
		return
	}
	fmt.Fprintln(w, "OK")
}

// String is one line: the check, the file and the message (which names the tensor or the
// layer, expert and projection).
func (p Problem) String() string {
	s := fmt.Sprintf("[%s] %s", p.Check, p.File)
	if p.Projection != "" && p.Layer != nil && p.Expert != nil {
		s += fmt.Sprintf(" (layer %d, expert %d, %s)", *p.Layer, *p.Expert, p.Projection)
	}
	return s + ": " + p.Message
}
