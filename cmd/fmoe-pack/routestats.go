package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/runtime/routetrace"
)

func routeStatsCmd() *cli.Command {
	return &cli.Command{
		Name:      "route-stats",
		Usage:     "print the cache statistics of a routing trace (one recorded from a real run, or generated)",
		UsageText: "fmoe-pack route-stats --trace FILE",
		Description: `Reads a routing trace (docs/route-trace.md) and prints what fmoe-pack route-trace prints about
the traces it writes, beside flash-moe's measurements of Qwen3.5-397B-A17B: per cache size
(entries per layer) the per-layer LRU hit rate, distinct experts over 30 tokens, consecutive-token
overlap and cross-layer correlation; for K > 4 also the trace cut to each token's top 4.

Record a trace of your own model's routing with fmoe-run generate --record-route FILE. Layers
without routed experts (dense layers, such as DeepSeek-V3's first three) are left out of the
statistics, and the report says which.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "trace", Usage: "routing trace `FILE`", Required: true},
		},
		Action: runRouteStats,
	}
}

func runRouteStats(c *cli.Context) error {
	if c.NArg() > 0 {
		return cliutil.UsageError("route-stats takes flags only (got %q): give the file with --trace", c.Args().Slice())
	}
	path := c.String("trace")
	tr, err := routetrace.Load(path)
	if err != nil {
		return cliutil.UsageError("--trace: %v", err)
	}
	fmt.Printf("%s: %d layers x %d experts, K=%d, %d tokens, model %s\n", path, tr.Layers, tr.Experts, tr.K, tr.Tokens, tr.Model)
	routed, dense := tr.Routed()
	if routed == nil {
		return fmt.Errorf("%s: no layer has a routed expert (every weight is 0): nothing to report", path)
	}
	if len(dense) > 0 {
		fmt.Printf("layers without routed experts, left out: %v\n", dense)
	}
	fmt.Println()
	return routetrace.Report(os.Stdout, routed, nil)
}
