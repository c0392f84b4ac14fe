package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/pack"
	"github.com/fmoe/fmoe/runtime/routetrace"
)

func routeTraceCmd() *cli.Command {
	return &cli.Command{
		Name:      "route-trace",
		Usage:     "write a routing trace with a real model's routing statistics, for benchmarks",
		UsageText: "fmoe-pack route-trace --preset NAME --tokens N --out FILE [--k K] [--layers N] [--seed S] [--model zipf|mix] [--force]",
		Description: `Writes, for every token position and layer, K expert ids and weights drawn from a statistical
model of Qwen3.5-397B-A17B's routing, fitted to flash-moe's measurements (per-layer LRU hit rate
49/59/68/71% with 16/32/64/128 entries, 200 tokens at K=4). Replay it with
fmoe-run generate --route-trace FILE, so that a synthetic model (fmoe-pack synth) reads and keeps
experts as the real one would. The format is docs/route-trace.md; the models and the fit are in
docs/benchmarks.md ("Routing traces").

Two models fit the measured range equally and differ beyond it: zipf (Zipf popularity plus reuse
of recent tokens' experts) and mix (a hot set plus uniform draws plus reuse). --model picks the
one that generates the trace; the report prints both, so each cache-size figure comes with its
uncertainty. The top 4 of a trace with K >= 4 is the K=4 trace of the same seed.

The report (stdout): the trace's per-layer LRU hit rate per cache size beside the other model's
and flash-moe's, distinct experts over 30 tokens, consecutive-token overlap, cross-layer
correlation (fmoe-pack route-stats prints the same for any trace, such as one recorded from a real
run with fmoe-run generate --record-route). Presets: ` + strings.Join(pack.PresetNames(), ", ") + ` (the fit is the 397B's;
other presets reuse its parameters).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "preset", Usage: "model shape: " + strings.Join(pack.PresetNames(), ", "), Required: true},
			&cli.IntFlag{Name: "tokens", Usage: "token positions in the trace (prompt plus generated tokens of the runs it serves)", Required: true},
			&cli.StringFlag{Name: "out", Usage: "output `FILE` (must not exist unless --force)", Required: true},
			&cli.IntFlag{Name: "k", Usage: "experts per token (default: the preset's num_experts_per_tok)"},
			&cli.IntFlag{Name: "layers", Usage: "only the first `N` layers, to match fmoe-pack synth --layers (default: all)"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "random seed"},
			&cli.StringFlag{Name: "model", Value: "mix", Usage: "routing model that generates the trace: zipf or mix"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing --out"},
		},
		Action: runRouteTrace,
	}
}

func runRouteTrace(c *cli.Context) error {
	if c.NArg() > 0 {
		return cliutil.UsageError("route-trace takes no arguments (got %q)", c.Args().Slice())
	}
	var p *pack.Preset
	for i := range pack.Presets {
		if pack.Presets[i].Name == c.String("preset") {
			p = &pack.Presets[i]
		}
	}
	if p == nil {
		return cliutil.UsageError("--preset %q: want one of %s", c.String("preset"), strings.Join(pack.PresetNames(), ", "))
	}
	layers, k := p.Layers, p.TopK
	if c.IsSet("layers") {
		if layers = c.Int("layers"); layers < 1 || layers > p.Layers {
			return cliutil.UsageError("--layers %d: %s has 1 to %d layers", layers, p.Name, p.Layers)
		}
	}
	if c.IsSet("k") {
		if k = c.Int("k"); k < 1 || k > p.Experts {
			return cliutil.UsageError("--k %d: want 1 to %d (the preset's experts per layer)", k, p.Experts)
		}
	}
	if c.Int("tokens") < 1 {
		return cliutil.UsageError("--tokens must be at least 1")
	}
	params, ok := routetrace.Fitted[c.String("model")]
	if !ok {
		return cliutil.UsageError("--model %q: want zipf or mix", c.String("model"))
	}
	out := c.String("out")
	if _, err := os.Lstat(out); err == nil && !c.Bool("force") {
		return fmt.Errorf("%s exists (use --force to replace it)", out)
	}
	o := routetrace.Options{Layers: layers, Experts: p.Experts, K: k, Tokens: c.Int("tokens"),
		Seed: c.Uint64("seed"), Params: params, Preset: p.Name}
	tr, err := routetrace.Generate(o)
	if err != nil {
		return err
	}
	if err := tr.Save(out); err != nil {
		return err
	}
	for _, name := range routetrace.Models {
		if name != params.Model {
			o.Params = routetrace.Fitted[name]
		}
	}
	other, err := routetrace.Generate(o)
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s: %s, %d layers x %d experts, K=%d, %d tokens, model %s, seed %d\n\n",
		out, p.Name, layers, p.Experts, k, tr.Tokens, params.Model, tr.Seed)
	return routetrace.Report(os.Stdout, tr, other)
}
