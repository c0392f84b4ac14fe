package eval

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints one row per case and the totals.
func (rep *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\ttype\texact\tvalid\t=mlx4\ttokens\ttime\tprompt\t")
	for _, r := range rep.Results {
		valid := "-"
		if r.Type != "text" {
			valid = mark(r.Verdict.Valid)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%.2fs\t%s\t\n", r.Index, r.Type, mark(r.Verdict.Exact), valid,
			mark(r.MatchRef), r.Tokens, r.Elapsed.Seconds(), clip(r.Prompt, 40))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprint(w, rep.Summary())
	return err
}

// Summary is the totals as text.
func (rep *Report) Summary() string {
	tps := 0.0
	if s := rep.Elapsed.Seconds(); s > 0 {
		tps = float64(rep.Tokens) / s
	}
	return fmt.Sprintf("exact %d/%d (reference mlx-4bit: %d/%d)\nstructurally valid %d/%d of the tool-call and JSON prompts\nreproduces mlx4_ids %d/%d\n%d tokens in %.1fs (%.1f tokens/s including prefill)\n",
		rep.Exact, rep.N, rep.RefExact, rep.N, rep.Valid, rep.Structured, rep.MatchMLX4, rep.N, rep.Tokens, rep.Elapsed.Seconds(), tps)
}

// WriteJSON prints the report as JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	type row struct {
		Index    int     `json:"index"`
		Type     string  `json:"type"`
		Exact    bool    `json:"exact"`
		Valid    bool    `json:"valid"`
		MatchRef bool    `json:"matches_mlx4_ids"`
		Tokens   int     `json:"tokens"`
		Seconds  float64 `json:"seconds"`
		Text     string  `json:"text"`
		IDs      []int   `json:"ids"`
	}
	out := struct {
		N          int     `json:"n"`
		Exact      int     `json:"exact"`
		RefExact   int     `json:"reference_mlx4_exact"`
		Valid      int     `json:"valid"`
		Structured int     `json:"structured"`
		MatchMLX4  int     `json:"matches_mlx4_ids"`
		Tokens     int     `json:"tokens"`
		Seconds    float64 `json:"seconds"`
		Cases      []row   `json:"cases"`
	}{rep.N, rep.Exact, rep.RefExact, rep.Valid, rep.Structured, rep.MatchMLX4, rep.Tokens, rep.Elapsed.Seconds(), nil}
	for _, r := range rep.Results {
		out.Cases = append(out.Cases, row{r.Index, r.Type, r.Verdict.Exact, r.Verdict.Valid, r.MatchRef, r.Tokens, r.Elapsed.Seconds(), r.Text, r.IDs})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(out)
}

func mark(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
