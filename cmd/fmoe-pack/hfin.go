package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/hub"
	"github.com/fmoe/fmoe/internal/cliutil"
)

// convertInput is the folder convert reads: --in itself, or for hf://ORG/NAME[@REV] the
// snapshot folder pull brings into the Hugging Face cache (downloading what is missing).
func convertInput(ctx context.Context, c *cli.Context) (string, error) {
	in := c.String("in")
	if !hub.IsRef(in) {
		return in, nil
	}
	ref, err := hub.ParseRef(in)
	if err != nil {
		return "", cliutil.UsageError("--in %v", err)
	}
	res, err := pullRef(ctx, ref, hub.Options{Progress: cliutil.ProgressWriter(c.Bool("quiet")), Log: c.App.ErrWriter})
	if err != nil {
		return "", err
	}
	return res.Dir, nil
}
