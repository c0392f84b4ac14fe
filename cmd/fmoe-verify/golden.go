package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/runtime/backends"
	"github.com/fmoe/fmoe/runtime/golden"
	"github.com/fmoe/fmoe/runtime/model"
)

func goldenCmd() *cli.Command {
	return &cli.Command{
		Name:      "golden",
		Usage:     "run a golden file's prompt and compare the logits with the reference",
		UsageText: "fmoe-verify golden --model DIR --golden FILE [--k K] [--tol X]",
		Description: `A golden file (safetensors) holds a prompt's input_ids, the reference logits at every position
(from Hugging Face transformers, float32) and a greedy continuation with its logits. This runs the
prompt through the packed model in one batched prefill, compares each position's logits
(relative L2 error ‖ours − ref‖/‖ref‖), then decodes the continuation one token at a time through
the caches and checks every greedy token. Prints the worst errors and PASS or FAIL.
Exit status: 0 PASS, 1 FAIL, 2 usage error.

Example:
   fmoe-verify golden --model build/tiny --golden testdata/tiny/golden/mlx4.safetensors`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Usage: "packed model `DIR`", Required: true},
			&cli.StringFlag{Name: "golden", Usage: "golden safetensors `FILE`", Required: true},
			&cli.IntFlag{Name: "k", Usage: "routed experts per token (the reference's; default: the model's)"},
			&cli.Float64Flag{Name: "tol", Value: 1e-4, Usage: "largest relative L2 error allowed per position"},
			&cli.StringFlag{Name: "backend", Value: "auto", Usage: "compute backend: auto, cpu, cuda or metal"},
		},
		Action: func(c *cli.Context) error {
			if c.Float64("tol") <= 0 {
				return cliutil.UsageError("--tol must be positive")
			}
			f, err := golden.Load(c.String("golden"))
			if err != nil {
				return err
			}
			be, err := backends.Open(c.String("backend"), backends.Options{Log: os.Stderr})
			if err != nil {
				return err
			}
			defer be.Close()
			m, err := model.Open(c.String("model"), model.Options{ExpertsPerToken: c.Int("k"), Backend: be})
			if err != nil {
				return err
			}
			defer m.Close()
			r, err := golden.Check(m, f, c.Float64("tol"))
			if err != nil {
				return err
			}
			fmt.Printf("prompt: %d positions, worst relative error %.3g at position %d\n", r.Positions, r.WorstPrompt, r.WorstPromptPos)
			fmt.Printf("decode: %d/%d greedy tokens identical, worst relative error %.3g\n", r.SameTokens, r.Generated, r.WorstGenerated)
			if !r.Pass() {
				if r.FirstMismatch >= 0 {
					fmt.Printf("first differing token: generated index %d\n", r.FirstMismatch)
				}
				fmt.Printf("FAIL (tolerance %g)\n", r.Tolerance)
				return cli.Exit("", cliutil.ExitFailure)
			}
			fmt.Printf("PASS (tolerance %g)\n", r.Tolerance)
			return nil
		},
	}
}
