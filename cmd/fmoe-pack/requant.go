package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/pack"
)

func requantCmd() *cli.Command {
	return &cli.Command{
		Name:      "requant",
		Usage:     "add a lower-bit copy of a packed model's experts (fmoe-run --2bit uses it)",
		UsageText: "fmoe-pack requant --bits 2 --model DIR [--rule lsq|mlx|minmax|seed] [--force]",
		Description: `Requantises every routed expert of a packed model from its own bits (4) to --bits (2),
group for group: each group is dequantised exactly as the runtime computes it and quantised
again by --rule. The result is written to packed_experts_2bit/ beside the 4-bit files and
recorded in model_weights.json; the 4-bit experts are never modified.

The set is built in a temporary directory inside --model, renamed into place when complete,
and the manifest is then replaced atomically, so an interrupted or failing run leaves the
model exactly as it was. Damaged 4-bit blocks (checksum mismatch) stop the run.

Rules: lsq (default; least squares, measured best in docs/quantization.md), mlx (MLX's
edge-exact rule), minmax (even levels from min to max), seed (the seed project's rule, only
to reproduce old packs). Check the result with: fmoe-verify --model DIR`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Usage: "packed model `DIR`", Required: true},
			&cli.IntFlag{Name: "bits", Usage: "target bits (2)", Value: 2},
			&cli.StringFlag{Name: "rule", Value: pack.DefaultRequantRule, Usage: "quantisation rule: lsq, mlx, minmax or seed"},
			&cli.BoolFlag{Name: "force", Usage: "rebuild an existing set at --bits"},
			&cli.IntFlag{Name: "workers", Usage: "parallel workers (default: one per CPU)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cliutil.UsageError("requant takes no arguments (got %q); use --model", c.Args().Slice())
			}
			switch c.String("rule") {
			case "lsq", "mlx", "minmax", "seed":
			default:
				return cliutil.UsageError("--rule %q: want lsq, mlx, minmax or seed", c.String("rule"))
			}
			if b := c.Int("bits"); b != 2 && b != 4 {
				return cliutil.UsageError("--bits %d: want 2 (or 4 for an 8-bit pack)", b)
			}
			if err := cliutil.NotNegative(c, "workers"); err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			st, err := pack.Requant(ctx, pack.RequantOptions{
				Model: c.String("model"), Bits: c.Int("bits"), Rule: c.String("rule"), Force: c.Bool("force"),
				Workers: c.Int("workers"), Progress: cliutil.ProgressWriter(c.Bool("quiet")), Log: os.Stderr,
			})
			if err != nil {
				return exitErr(err)
			}
			secs := st.Elapsed.Seconds()
			fmt.Printf("requantised %d experts to %d bits (rule %s) into %s: read %.2f GB, wrote %.2f GB in %.1fs\n",
				st.Experts, st.Bits, st.Rule, st.Dir, float64(st.BytesIn)/1e9, float64(st.BytesOut)/1e9, secs)
			return nil
		},
	}
}
