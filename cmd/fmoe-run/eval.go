package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/eval"
	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/runtime/model"
	"github.com/fmoe/fmoe/tokenizer"
)

func evalCmd() *cli.Command {
	return &cli.Command{
		Name:      "eval",
		Usage:     "run an eval file's prompts greedily and score the answers",
		UsageText: "fmoe-run eval --model DIR --eval FILE [--2bit] [--k K] [--threads N] [--cases 0,1,2] [--json] [--gpus LIST [--expert-load FILE]]",
		Description: `Runs every case of an fmoe eval file (models/fmoe-tiny-chat/eval/eval.json) as the reference
did: greedy, at most 64 new tokens, stopping at <|im_end|>. Each answer is scored by the file's
rule (exact: the right call with every parameter, equal JSON, equal text; structurally valid:
the call parses with the right function, the JSON parses with the right keys), and compared with
the reference's greedy ids on the dequantised mlx-4bit weights (mlx4_ids).`,
		Flags: append(modelFlags(),
			&cli.StringFlag{Name: "eval", Usage: "eval `FILE` (JSON)", Required: true},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.StringFlag{Name: "cases", Usage: "run only these case `INDICES` (comma-separated, from 0)"},
			&cli.StringFlag{Name: "reference", Usage: "also compare, position by position, with a reference pack `DIR` of the same model (e.g. its --bits 16 pack): top-1 agreement and KL"},
		),
		Action: func(c *cli.Context) error {
			if c.Bool("json") && c.IsSet("reference") {
				return cliutil.UsageError("--reference prints a line of its own: use it without --json")
			}
			f, err := eval.Load(c.String("eval"))
			if err != nil {
				return err
			}
			dir := c.String("model")
			tok, err := tokenizer.LoadDir(dir)
			if err != nil {
				return err
			}
			m, done, err := openModel(c)
			if err != nil {
				return err
			}
			defer closeModel(done)
			ctx, stop := cliutil.SignalContext()
			defer stop()
			o := eval.Options{}
			if c.IsSet("cases") {
				for _, v := range strings.FieldsFunc(c.String("cases"), func(r rune) bool { return r == ',' || r == ' ' }) {
					i, err := strconv.Atoi(v)
					if err != nil || i < 0 || i >= len(f.Cases) {
						return cliutil.UsageError("--cases: %q is not a case index (0..%d)", v, len(f.Cases)-1)
					}
					o.Cases = append(o.Cases, i)
				}
			}
			if w := cliutil.ProgressWriter(c.Bool("json")); w != nil {
				done := 0
				total := len(f.Cases)
				if o.Cases != nil {
					total = len(o.Cases)
				}
				o.OnCase = func(*eval.CaseResult) { done++; fmt.Fprintf(w, "\rcase %d/%d", done, total) }
				defer fmt.Fprintln(w)
			}
			rep, err := eval.Run(ctx, m, tok, f, o)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return rep.WriteJSON(os.Stdout)
			}
			fmt.Printf("model %s (K=%d), eval %s\n", dir, m.K, c.String("eval"))
			if err := rep.WriteTable(os.Stdout); err != nil {
				return err
			}
			if refDir := c.String("reference"); refDir != "" {
				ref, err := model.Open(refDir, model.Options{})
				if err != nil {
					return fmt.Errorf("--reference: %w", err)
				}
				defer ref.Close()
				a, err := eval.Agree(ctx, m, ref, f, o.Cases)
				if err != nil {
					return err
				}
				fmt.Printf("against %s over %d answer positions: top-1 agreement %.1f%%, mean KL %.4f nats (max %.3f)\n",
					refDir, a.Positions, 100*float64(a.Top1)/float64(a.Positions), a.MeanKL, a.MaxKL)
			}
			return nil
		},
	}
}
