package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/hub"
	"github.com/fmoe/fmoe/internal/cliutil"
)

const hubEnvHelp = `Environment (as huggingface_hub reads it, so downloads are shared with transformers, mlx-lm
and vLLM):
   HF_ENDPOINT      the Hub or a mirror (default https://huggingface.co)
   HF_TOKEN         a read token for gated and private repositories; without it the token file
                    that 'hf auth login' writes ($HF_HOME/token, ~/.cache/huggingface/token) is used
   HF_HUB_OFFLINE=1 use the cache only, never the network
   HF_HUB_CACHE     the cache (default $HF_HOME/hub, ~/.cache/huggingface/hub); files are kept as
                    models--ORG--NAME/{blobs,snapshots/COMMIT,refs}`

func pullCmd() *cli.Command {
	return &cli.Command{
		Name:      "pull",
		Usage:     "download a checkpoint from the Hugging Face Hub (only the files a pack needs)",
		UsageText: "fmoe-pack pull hf://ORG/NAME[@REVISION] [--dir DIR] [--workers N]",
		ArgsUsage: "hf://ORG/NAME[@REVISION]",
		Description: `Downloads config.json, generation_config.json, the tokenizer files, chat_template.jinja,
model.safetensors.index.json and the shards the index names (or model.safetensors) of the
repository at REVISION (a branch, tag or commit; default main), several files at once, into the
Hugging Face cache, or into --dir as plain files. Every file is checked against the Hub's hash
(sha256 for LFS files) before it gets its name; a mismatch is fetched once more, then the run
stops. An interrupted pull resumes where it stopped when run again. Prints the folder holding
the files, ready for: fmoe-pack convert --in FOLDER --out DIR (or convert --in hf://... directly).

` + hubEnvHelp + `

Example:
   fmoe-pack pull hf://mlx-community/Qwen3.5-397B-A17B-4bit`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "write plain files into `DIR` instead of the cache"},
			&cli.IntFlag{Name: "workers", Value: 8, Usage: "files downloaded at once"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cliutil.UsageError("pull takes one hf://ORG/NAME[@REVISION] (got %d arguments; flags go before it)", c.NArg())
			}
			ref, err := hub.ParseRef(c.Args().First())
			if err != nil {
				return cliutil.UsageError("%v", err)
			}
			if c.Int("workers") < 1 {
				return cliutil.UsageError("--workers %d: want 1 or more", c.Int("workers"))
			}
			ctx, stop := cliutil.SignalContext()
			defer stop()
			res, err := pullRef(ctx, ref, hub.Options{Dir: c.String("dir"), Workers: c.Int("workers"),
				Progress: cliutil.ProgressWriter(c.Bool("quiet")), Log: c.App.ErrWriter})
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, res.Dir)
			return nil
		},
	}
}

// pullRef downloads ref with the user's Hub settings, logging to o.Log.
func pullRef(ctx context.Context, ref hub.Ref, o hub.Options) (*hub.Result, error) {
	s, err := hub.SettingsFromEnv()
	if err != nil {
		return nil, err
	}
	res, err := hub.NewClient(s).Pull(ctx, ref, o)
	if err != nil {
		return nil, err
	}
	if !res.FromCacheOnly {
		fmt.Fprintf(o.Log, "pulled %s (commit %s): %d files, %.2f GB received, %.2f GB already here\n",
			ref, res.Commit, len(res.Files), float64(res.Fetched)/1e9, float64(res.AlreadyHad)/1e9)
	}
	return res, nil
}
