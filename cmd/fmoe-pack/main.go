// Command fmoe-pack converts Hugging Face and mlx-community checkpoints into the fmoe packed
// streaming layout, requantises experts, and writes synthetic checkpoints for sizing.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/hub"
	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/pack"
)

func main() { cliutil.Run(newApp()) }

func newApp() *cli.App {
	return &cli.App{
		Name:  "fmoe-pack",
		Usage: "turn a model checkpoint into fmoe's packed streaming layout",
		Description: `fmoe-pack reads a Qwen3.5-MoE, Qwen3-MoE, GLM-4.5 MoE or DeepSeek-V3 / Kimi-K2 checkpoint
(Hugging Face safetensors in bf16/f16/f32 or block-scaled FP8, or an mlx-community
affine-quantised one; docs/families.md) and writes a packed model directory: model_weights.bin (all
non-expert tensors, mmapped by fmoe-run), model_weights.json (the manifest, with checksums) and
packed_experts/layer_NN.bin (one file per layer, one aligned block per expert).

Example:
   fmoe-pack convert --in ~/models/Qwen3.5-397B-A17B-4bit --out ~/models/q397-fmoe
   fmoe-verify --model ~/models/q397-fmoe`,
		Commands: []*cli.Command{convertCmd(), pullCmd(), synthCmd(), requantCmd(), stackCmd(), lz4Cmd(), routeTraceCmd(), routeStatsCmd()},
	}
}

func convertCmd() *cli.Command {
	return &cli.Command{
		Name:      "convert",
		Usage:     "pack a checkpoint directory",
		UsageText: "fmoe-pack convert --in DIR|hf://ORG/NAME[@REV] --out DIR [--stream] [--bits 4|2|8|16] [--dense-bits 4|8|16] [--force]",
		Description: `Reads config.json, model.safetensors.index.json (or model.safetensors) and the shards from --in.
Float checkpoints are quantised (MLX affine, group 64): routed experts at --bits, other matrices
at --dense-bits (router and shared-expert gates at 8 bits or more); --bits 16 keeps bf16 and is
lossless. FP8 checkpoints (F8_E4M3 weights with weight_scale_inv block scales) are read as the
float32 values code x scale and packed as a float32 source would be (--bits 16 keeps their
dense matrices as F32 and rounds their experts to bf16).
mlx-community checkpoints are copied bit-exact. The output is written to a temporary
directory beside --out and renamed when complete. --out must not be, contain or lie inside --in
(or the files its shards link to): such an output is refused before anything is written.
--in hf://ORG/NAME[@REVISION] first downloads the files a pack needs into the Hugging Face cache
(see fmoe-pack pull --help) and packs from there: the disk must hold the download and the pack.

--stream (with --in hf://...) packs while it downloads, for a disk too small for both: it reads
every shard's header first, says how much space it needs ("streaming needs 230.41 GB free: the
pack (at most 215.02 GB) in ..., and at most 3 of the 94 shards ...") and stops there if the
disk has less; then it
downloads the shards --downloads at a time, packs each layer as soon as its shards are all
here, and deletes each shard once nothing still needs it. The pack is the same, byte for byte,
as without --stream. Shards already in the cache are used and kept. The snapshot is left
without the shards it deleted: other tools that need them download them again. An interrupted
--stream leaves no pack and no shard (run it again: it starts over). HF_TOKEN, HF_ENDPOINT,
HF_HUB_CACHE are read as fmoe-pack pull --help describes.

Example:
   fmoe-pack convert --in hf://Qwen/Qwen3.5-35B-A3B --out ~/models/q35-fmoe --stream`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "in", Usage: "source checkpoint `DIR`, or hf://ORG/NAME[@REVISION] to download it first (as fmoe-pack pull)", Required: true},
			&cli.StringFlag{Name: "out", Usage: "output `DIR` (must not exist unless --force)", Required: true},
			&cli.IntFlag{Name: "bits", Usage: "routed expert bits: 2, 4, 8 or 16 (default 4, or the source's own)"},
			&cli.IntFlag{Name: "dense-bits", Usage: "bits for other matrices of a float source: 4, 8 or 16 (default 4; --bits 8/16 raise it)"},
			&cli.StringFlag{Name: "rule", Value: "minmax", Usage: "quantisation rule for float sources: minmax (every weight within half a step), mlx (bit-identical to mlx-community conversions) or lsq (lowest RMSE, ~10x slower)"},
			&cli.BoolFlag{Name: "stream", Usage: "with --in hf://...: pack while downloading, keeping only a few shards on disk"},
			&cli.IntFlag{Name: "downloads", Value: 2, Usage: "with --stream: `N` shards downloaded at once, 1 or more (each one more adds a shard's size to the disk needed)"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing --out"},
			&cli.IntFlag{Name: "workers", Usage: "parallel quantisation workers (default: one per CPU)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cliutil.UsageError("convert takes no arguments (got %q); use --in and --out", c.Args().Slice())
			}
			if err := checkConvertFlags(c); err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			o := pack.Options{
				Out: c.String("out"), Bits: c.Int("bits"), DenseBits: c.Int("dense-bits"),
				Rule: c.String("rule"), Force: c.Bool("force"), Workers: c.Int("workers"),
				Progress: cliutil.ProgressWriter(c.Bool("quiet")), Log: os.Stderr,
			}
			var st *pack.Stats
			var err error
			if c.Bool("stream") {
				st, err = convertStream(ctx, c, o)
			} else if o.In, err = convertInput(ctx, c); err == nil {
				st, err = pack.Convert(ctx, o)
			}
			if err != nil {
				return exitErr(err)
			}
			secs := st.Elapsed.Seconds()
			fmt.Fprintf(c.App.Writer, "packed %s (%s layout) into %s: %d tensors, %d experts at %d bits (dense %d bits), read %.2f GB, wrote %.2f GB in %.1fs (%.2f GB/s read)\n",
				c.String("in"), st.Layout, c.String("out"), st.Tensors, st.Experts, st.ExpertBits, st.DenseBits,
				float64(st.BytesIn)/1e9, float64(st.BytesOut)/1e9, secs, float64(st.BytesIn)/1e9/max(secs, 1e-9))
			return nil
		},
	}
}

// checkConvertFlags refuses values pack.Convert would refuse, before anything is read, as
// usage errors.
func checkConvertFlags(c *cli.Context) error {
	if err := cliutil.OneOf("bits", c.Int("bits"), 2, 4, 8, 16); err != nil && c.IsSet("bits") {
		return err
	}
	if err := cliutil.OneOf("dense-bits", c.Int("dense-bits"), 4, 8, 16); err != nil && c.IsSet("dense-bits") {
		return err
	}
	if err := cliutil.OneOf("rule", c.String("rule"), "minmax", "mlx", "lsq"); err != nil {
		return err
	}
	if c.Bool("stream") && !hub.IsRef(c.String("in")) {
		return cliutil.UsageError("--stream packs while downloading from the Hub: it needs --in hf://ORG/NAME[@REVISION], not %q", c.String("in"))
	}
	if err := outFree(c); err != nil {
		return err
	}
	if c.IsSet("downloads") && !c.Bool("stream") {
		return cliutil.UsageError("--downloads %d: it is the number of shards --stream downloads at once; add --stream, or leave --downloads out", c.Int("downloads"))
	}
	if c.Int("downloads") < 1 {
		return cliutil.UsageError("--downloads %d: want 1 or more", c.Int("downloads"))
	}
	return cliutil.NotNegative(c, "workers")
}

// outFree refuses an existing --out without --force before anything is read: with --in
// hf://... the pack would otherwise find it only after the whole download.
func outFree(c *cli.Context) error {
	out := c.String("out")
	if _, err := os.Lstat(out); err == nil && !c.Bool("force") {
		return cliutil.UsageError("--out %s already exists (use --force to replace it, or another --out)", out)
	}
	return nil
}
