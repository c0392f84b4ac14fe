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
(mlx-lm's naming for that family; deepseek-v3-tiny, whose 48-wide latent mlx-lm could not
quantize, is written in hf) or the Hugging Face bf16 layout (--layout hf); the
DeepSeek-V3 and GLM-4.5 presets begin with 3 dense layers (Kimi-K2 with 1), so --layers must
exceed that: a synth without a MoE layer is refused.

Example: fmoe-pack synth --preset qwen3.5-35b-a3b --layers 2 --out /tmp/q35-2l
         fmoe-pack convert --in /tmp/q35-2l --out /tmp/q35-2l-fmoe`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "preset", Usage: "model shape: " + strings.Join(pack.PresetNames(), ", ")},
			&cli.BoolFlag{Name: "list", Usage: "print the presets' sizes (Markdown) and exit"},
			&cli.IntFlag{Name: "layers", Usage: "write only the first `N` layers", DefaultText: "all"},
			&cli.StringFlag{Name: "out", Usage: "output `DIR`"},
			&cli.StringFlag{Name: "layout", Usage: "mlx-4bit (mlx-community's 4-bit checkpoints) or hf (Hugging Face bf16) (default: mlx-4bit, or hf for a preset mlx-lm could not quantize, such as deepseek-v3-tiny)"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "random seed"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing --out"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
		},
		Action: func(c *cli.Context) error {
			if c.Bool("list") {
				for _, f := range []string{"preset", "out", "layers", "layout", "seed", "force"} {
					if c.IsSet(f) {
						return cliutil.UsageError("--list prints every preset's sizes and writes nothing: it takes no --%s", f)
					}
				}
				return pack.WriteSizeTable(c.App.Writer, false)
			}
			layout, err := checkSynthFlags(c)
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			n, err := pack.Synth(ctx, pack.SynthOptions{Preset: c.String("preset"), Layers: c.Int("layers"), Layout: layout,
				Out: c.String("out"), Force: c.Bool("force"), Seed: c.Uint64("seed"), Progress: cliutil.ProgressWriter(c.Bool("quiet"))})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "wrote %s (%s, %s layout): %.2f GB of tensors\n", c.String("out"), c.String("preset"), layout, float64(n)/1e9)
			return nil
		},
	}
}

// checkSynthFlags refuses, as usage errors, what pack.Synth would refuse, before anything is
// written, and returns the layout to write.
func checkSynthFlags(c *cli.Context) (string, error) {
	for _, f := range []string{"preset", "out"} {
		if c.String(f) == "" {
			return "", cliutil.UsageError("--%s is required (or --list)", f)
		}
	}
	if err := cliutil.OneOf("preset", c.String("preset"), pack.PresetNames()...); err != nil {
		return "", err
	}
	if err := outFree(c); err != nil {
		return "", err
	}
	p := pack.FindPreset(c.String("preset"))
	if err := cliutil.NotNegative(c, "layers"); err != nil {
		return "", err
	}
	if n := c.Int("layers"); n > p.Layers {
		return "", cliutil.UsageError("--layers %d: %s has %d layers (want 1 to %d, or 0 for all)", n, p.Name, p.Layers, p.Layers)
	} else if n > 0 {
		if err := p.CheckMoELayers(n); err != nil {
			return "", cliutil.UsageError("%v", err)
		}
	}
	fits, err := pack.SynthLayout(p.Name)
	if err != nil {
		return "", err
	}
	layout := c.String("layout")
	if layout == "" {
		return fits, nil
	}
	if err := cliutil.OneOf("layout", layout, "mlx-4bit", "hf"); err != nil {
		return "", err
	}
	if layout == "mlx-4bit" && fits != layout {
		return "", cliutil.UsageError("--layout mlx-4bit: %s's shapes do not split into mlx-lm's groups of 64 inputs (want --layout hf)", p.Name)
	}
	return layout, nil
}
