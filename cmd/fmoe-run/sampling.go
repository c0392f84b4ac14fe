package main

import (
	"errors"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/chat"
	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/runtime/model"
)

// samplingFlags are the sampling settings of generate and chat.
func samplingFlags() []cli.Flag {
	return []cli.Flag{
		&cli.Float64Flag{Name: "temperature", Usage: "sampling temperature, 0 to 2 (0: greedy)"},
		&cli.Float64Flag{Name: "top-p", Value: 1, Usage: "nucleus sampling mass, above 0 and at most 1 (1: off)"},
		&cli.IntFlag{Name: "top-k", Usage: "sample among the K most likely tokens (0: off)"},
		&cli.Uint64Flag{Name: "seed", Usage: "sampling seed"},
	}
}

// sampler reads the sampling flags and --tokens, refusing what the server
// would refuse in a request, with the same words (a usage error).
func sampler(c *cli.Context) (model.Sampler, error) {
	s := model.Sampler{Temperature: c.Float64("temperature"), TopP: c.Float64("top-p"), TopK: c.Int("top-k"), Seed: c.Uint64("seed")}
	n := c.Int("tokens")
	err := chat.Sampling{Temperature: &s.Temperature, TopP: &s.TopP, TopK: &s.TopK, MaxTokens: &n}.Validate()
	var pe *chat.ParamError
	if errors.As(err, &pe) {
		pe.Flag = true
		return s, cliutil.UsageError("%v", pe)
	}
	return s, err
}
