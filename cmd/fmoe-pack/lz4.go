package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/pack"
)

func lz4Cmd() *cli.Command {
	return &cli.Command{
		Name:      "lz4",
		Usage:     "write an LZ4-compressed copy of the experts (an experiment: see docs/negative-results.md)",
		UsageText: "fmoe-pack lz4 --model DIR [--bits N] [--force]",
		Description: `Writes packed_experts_lz4/layer_NN.lz4 beside packed_experts/: each expert is one independently
decodable LZ4 block (kept raw when LZ4 would not shrink it) with a per-layer index, so a
reader fetches one expert with one pread and one decompression (format/lz4file: Open / ReadExpert).
The manifest is not changed and fmoe-run ignores the copy unless told to read it.

This is kept so the measurement can be rerun: quantised weights are close to random bytes,
LZ4 saves little, and decompressing costs more than the read it saves
(docs/negative-results.md, docs/benchmarks.md).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Usage: "packed model `DIR`", Required: true},
			&cli.IntFlag{Name: "bits", Usage: "which expert set to copy (default: the pack's own)"},
			&cli.BoolFlag{Name: "force", Usage: "rebuild an existing copy"},
			&cli.IntFlag{Name: "workers", Usage: "parallel compressors (default: one per CPU)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cliutil.UsageError("lz4 takes no arguments (got %q); use --model", c.Args().Slice())
			}
			if err := cliutil.NotNegative(c, "bits", "workers"); err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			st, err := pack.LZ4(ctx, pack.LZ4Options{
				Model: c.String("model"), Bits: c.Int("bits"), Force: c.Bool("force"), Workers: c.Int("workers"),
				Progress: cliutil.ProgressWriter(c.Bool("quiet")), Log: os.Stderr,
			})
			if err != nil {
				return exitErr(err)
			}
			fmt.Printf("compressed %d experts into %s: %.3f GB -> %.3f GB (ratio %.3f, %d kept raw) in %.1fs\n",
				st.Experts, st.Dir, float64(st.RawBytes)/1e9, float64(st.LZ4Bytes)/1e9,
				float64(st.RawBytes)/float64(max(st.LZ4Bytes, 1)), st.Stored, st.Elapsed.Seconds())
			return nil
		},
	}
}
