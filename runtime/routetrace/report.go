package routetrace

import (
	"fmt"
	"io"
	"strings"
)

// ReportSizes are the cache sizes (entries per layer) a report lists:
// flash-moe's four, then extrapolation to every expert.
func ReportSizes(experts int) []int {
	var s []int
	for _, c := range []int{16, 32, 64, 128, 192, 256, 320, 384, 448, 512} {
		if c <= experts {
			s = append(s, c)
		}
	}
	if s[len(s)-1] != experts && experts < 512 {
		s = append(s, experts)
	}
	return s
}

// Report writes a trace's statistics beside flash-moe's and beside other,
// a trace of the other model with the same shape and seed (nil: no such
// column, as for a recorded trace): per
// cache size the LRU hit rate over the first 200 tokens from a cold cache
// (as flash-moe measured) and, when the trace is longer than 400 tokens,
// warm (the tokens after those 200); then distinct experts over 30 tokens,
// consecutive-token overlap and cross-layer correlation. A trace with K > 4
// gets a second block for its top 4 per token, the K flash-moe ran at.
func Report(w io.Writer, tr, other *Trace) error {
	if err := reportK(w, tr, other); err != nil {
		return err
	}
	if tr.K > FlashMoE.K {
		t4, err := tr.TopK(FlashMoE.K)
		if err != nil {
			return err
		}
		var o4 *Trace
		if other != nil {
			if o4, err = other.TopK(FlashMoE.K); err != nil {
				return err
			}
		}
		fmt.Fprintf(w, "\nthe same trace cut to each token's top %d (what flash-moe ran):\n", FlashMoE.K)
		return reportK(w, t4, o4)
	}
	return nil
}

func reportK(w io.Writer, tr, other *Trace) error {
	f := FlashMoE
	cold := min(f.Tokens, tr.Tokens)
	warm := tr.Tokens > 2*f.Tokens
	var b strings.Builder
	fmt.Fprintf(&b, "per-layer LRU hit rate at K=%d, mean over %d layers; cold = tokens 0-%d from an empty cache", tr.K, tr.Layers, cold-1)
	if warm {
		fmt.Fprintf(&b, ", warm = tokens %d-%d", f.Tokens, tr.Tokens-1)
	}
	fmt.Fprintf(&b, "\n%-8s %-10s", "entries", tr.Model+" cold")
	if warm {
		fmt.Fprintf(&b, " %-10s", tr.Model+" warm")
	}
	if other != nil {
		fmt.Fprintf(&b, " %-10s", other.Model+" cold")
		if warm {
			fmt.Fprintf(&b, " %-10s", other.Model+" warm")
		}
	}
	fmt.Fprintf(&b, " %s\n", "flash-moe (K=4, 200 tokens)")
	for _, c := range ReportSizes(tr.Experts) {
		fmt.Fprintf(&b, "%-8d %-10s", c, pct(mean(SimulateLRU(tr, c, 0, cold))))
		if warm {
			fmt.Fprintf(&b, " %-10s", pct(mean(SimulateLRU(tr, c, f.Tokens, tr.Tokens))))
		}
		if other != nil {
			fmt.Fprintf(&b, " %-10s", pct(mean(SimulateLRU(other, c, 0, min(cold, other.Tokens)))))
			if warm {
				fmt.Fprintf(&b, " %-10s", pct(mean(SimulateLRU(other, c, f.Tokens, other.Tokens))))
			}
		}
		fm := "-"
		for i, s := range f.Sizes {
			if s == c {
				fm = fmt.Sprintf("%.0f%%", 100*f.Hit[i])
			}
		}
		fmt.Fprintf(&b, " %s\n", fm)
	}
	if tr.Tokens >= f.DistinctWindow {
		lo, m, hi := Range(Distinct(tr, f.DistinctWindow, cold))
		fmt.Fprintf(&b, "distinct experts over %d tokens, per layer: %s-%s of %d (mean %s); flash-moe %.0f-%.0f%%\n",
			f.DistinctWindow, pct(lo), pct(hi), tr.Experts, pct(m), 100*f.DistinctLo, 100*f.DistinctHi)
	}
	if tr.Tokens >= 2 {
		lo, m, hi := Range(Overlap(tr, cold))
		fmt.Fprintf(&b, "consecutive-token overlap, per layer: %s-%s (mean %s); flash-moe %.0f-%.0f%%\n",
			pct(lo), pct(hi), pct(m), 100*f.OverlapLo, 100*f.OverlapHi)
		fmt.Fprintf(&b, "cross-layer correlation of the overlaps: %.3f; flash-moe ≈ 0\n", CrossLayer(tr, cold))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func pct(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }
