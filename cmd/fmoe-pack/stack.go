package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/pack"
)

func stackCmd() *cli.Command {
	return &cli.Command{
		Name:      "stack",
		Usage:     "write a pack of N copies of one layer of a packed model (to measure a layer's cost)",
		UsageText: "fmoe-pack stack --model DIR --out DIR [--layer L] --layers N [--force]",
		Description: `Copies layer L of --model N times into a new pack at --out: the layer's dense tensors once
per output layer (renamed model.layers.0. to N-1.), its expert files in every expert set (copied,
not linked, so that no layer's reads hit pages another layer put in the page cache), and the
other tensors and side files as they are. Every copied range is checked against the manifest's
CRC-32C on the way, so a damaged --model is named, never copied on.

What it is for: the cost of one layer on a disk that holds only a layer or two of a large model,
as the difference between the decode times of the N- and (N+1)-layer packs (every copy holds the
same weights, so each costs what the layer costs). scripts/peer-bench.sh
uses it beside llama.cpp's own stacked GGUF blocks. The result is a valid pack (fmoe-verify
checks it) but not a meaningful model.

--model is only read; --out must not be, contain or lie inside it. The output is written to a
temporary directory beside --out and renamed when complete.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Required: true, Usage: "the packed model read (`DIR`)"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "the pack written (`DIR`)"},
			&cli.IntFlag{Name: "layer", Usage: "the layer copied (`L`, default 0)"},
			&cli.IntFlag{Name: "layers", Required: true, Usage: "how many layers the output has (`N`, 1 to 1024)"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing --out"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cliutil.UsageError("stack takes no arguments (got %q); use --model and --out", c.Args().Slice())
			}
			if err := cliutil.NotNegative(c, "layer"); err != nil {
				return err
			}
			if n := c.Int("layers"); n < 1 || n > pack.MaxStackLayers {
				return cliutil.UsageError("--layers %d: want 1 to %d", n, pack.MaxStackLayers)
			}
			ctx, stop := signalContext()
			defer stop()
			o := pack.StackOptions{Model: c.String("model"), Out: c.String("out"), Layer: c.Int("layer"),
				Layers: c.Int("layers"), Force: c.Bool("force"), Progress: cliutil.ProgressWriter(c.Bool("quiet")), Log: os.Stderr}
			if err := pack.Stack(ctx, o); err != nil {
				return exitErr(err)
			}
			fmt.Printf("wrote %s: layer %d of %s, %d times\n", o.Out, o.Layer, o.Model, o.Layers)
			return nil
		},
	}
}
