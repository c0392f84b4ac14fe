package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/pack"
)

func synthCmd() *cli.Command {
	return &cli.Command{
		Name:      "synth",
		Usage:     "write a random checkpoint with a real model's dimensions",
		UsageText: "fmoe-pack synth --preset NAME [--layers N] --out DIR [--layout mlx-4bit|hf] [--seed S]\n   fmoe-pack synth --list",
		Description: `Writes a checkpoint of random weights shaped exactly like the named model (its first --layers
layers), in the mlx-community 4-bit layout or the Hugging Face bf16 layout. Use it to benchmark
packing and decoding, or to size a disk before a 200 GB download: fmoe-pack convert packs it like
the real thing. Presets: ` + strings.Join(pack.PresetNames(), ", ") + `.

Sizes: qwen3.5-397b-a17b at 4 bits is about 3.7 GB per layer plus 1.2 GB of embeddings; in bf16
about 13 GB per layer. --list prints each preset's expert size, the bytes a token reads at 4 and
2 bits, and its KV cache per token. Each family is written in the mlx-4bit layout by default
(mlx-lm's naming for that family) or the Hugging Face bf16 layout (--layout hf); the
DeepSeek-V3 and GLM-4.5 presets begin with dense layers (3 of them), so --layers must exceed
that for a synth with experts.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "preset", Usage: "model shape: " + strings.Join(pack.PresetNames(), ", ")},
			&cli.BoolFlag{Name: "list", Usage: "print the presets' sizes (Markdown) and exit"},
			&cli.IntFlag{Name: "layers", Usage: "write only the first `N` layers (default: all)"},
			&cli.StringFlag{Name: "out", Usage: "output `DIR`"},
			&cli.StringFlag{Name: "layout", Value: "mlx-4bit", Usage: "mlx-4bit or hf"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "random seed"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing --out"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
		},
		Action: func(c *cli.Context) error {
			if c.Bool("list") {
				return pack.WriteSizeTable(c.App.Writer, false)
			}
			for _, f := range []string{"preset", "out"} {
				if c.String(f) == "" {
					return cliutil.UsageError("--%s is required (or --list)", f)
				}
			}
			if err := cliutil.OneOf("preset", c.String("preset"), pack.PresetNames()...); err != nil {
				return err
			}
			if err := cliutil.OneOf("layout", c.String("layout"), "mlx-4bit", "hf"); err != nil {
				return err
			}
			if err := cliutil.NotNegative(c, "layers"); err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			n, err := pack.Synth(ctx, pack.SynthOptions{Preset: c.String("preset"), Layers: c.Int("layers"), Layout: c.String("layout"),
				Out: c.String("out"), Force: c.Bool("force"), Seed: c.Uint64("seed"), Progress: cliutil.ProgressWriter(c.Bool("quiet"))})
			if err != nil {
				return err
			}
			fmt.Printf("wrote %s (%s, %s layout): %.2f GB of tensors\n", c.String("out"), c.String("preset"), c.String("layout"), float64(n)/1e9)
			return nil
		},
	}
}
