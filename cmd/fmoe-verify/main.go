// Command fmoe-verify checks a packed model directory: its structure, the checksum of every
// dense tensor and expert block, and optionally its values against the source checkpoint.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/verify"
)

func main() { cliutil.Run(newApp()) }

func newApp() *cli.App {
	return &cli.App{
		Name:      "fmoe-verify",
		Usage:     "check that a packed fmoe model is complete and undamaged",
		UsageText: "fmoe-verify --model DIR [--source DIR] [--json] [--workers N] [--quiet]",
		Description: `Checks a directory written by fmoe-pack:

  structure   the manifest's own checksum, version and schema; every tensor inside
              model_weights.bin and aligned; every expert file exactly experts x stride bytes;
              shapes consistent with the config; tokenizer and config files present and intact
  checksums   the CRC-32C of every dense tensor and of every expert block, read once, several
              files at a time, with a progress bar; padding must be zero. A damaged block is
              reported as (layer, expert, projection) and, for a single bad byte, its offset
  --source    compares the pack with the checkpoint it was made from: bytes equal where
              packing copies, within the quantisation bound where it quantised, and a
              requantised (2-bit) set within its bound of the 4-bit set; prints the worst error
              per tensor kind

Results go to stdout (--json for a machine-readable report), progress and notes to stderr.
Exit status: 0 all good, 1 something is wrong (or could not be read), 2 usage error.

fmoe-verify golden runs the model against reference outputs of Hugging Face transformers (see
fmoe-verify golden --help).

Examples:
   fmoe-verify --model ~/models/q397-fmoe
   fmoe-verify --model ~/models/q397-fmoe --source ~/models/Qwen3.5-397B-A17B --json > report.json`,
		Flags: []cli.Flag{
			// Not Required: urfave/cli would then demand it before the golden subcommand too.
			&cli.StringFlag{Name: "model", Usage: "packed model `DIR` (holds model_weights.json)"},
			&cli.StringFlag{Name: "source", Usage: "the checkpoint `DIR` the model was packed from, to compare values"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.IntFlag{Name: "workers", Usage: "files read at once: `N` (more helps on NVMe, not on a slow disk)", DefaultText: fmt.Sprint(verify.DefaultWorkers())},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
		},
		Action:          run,
		HideHelpCommand: true,
		Commands:        []*cli.Command{goldenCmd()},
	}
}

func run(c *cli.Context) error {
	if c.NArg() > 0 {
		return cliutil.UsageError("unexpected arguments %q: use --model DIR", c.Args().Slice())
	}
	if c.String("model") == "" {
		return cliutil.UsageError("--model DIR is required (see --help)")
	}
	if c.Int("workers") < 0 {
		return cliutil.UsageError("--workers %d: want a positive number", c.Int("workers"))
	}
	for _, f := range []string{"model", "source"} {
		if d := c.String(f); d != "" {
			if st, err := os.Stat(d); err != nil || !st.IsDir() {
				return cliutil.UsageError("--%s %s: not a directory", f, d)
			}
		}
	}
	ctx, stop := cliutil.SignalContext()
	defer stop()
	r, err := verify.Run(ctx, verify.Options{
		Model: c.String("model"), Source: c.String("source"), Workers: c.Int("workers"),
		Progress: cliutil.ProgressWriter(c.Bool("quiet")), Log: os.Stderr,
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		r.WriteText(os.Stdout)
	}
	if !r.OK {
		return cli.Exit("", cliutil.ExitFailure)
	}
	return nil
}
