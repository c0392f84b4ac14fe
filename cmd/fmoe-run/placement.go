package main

import (
	"fmt"
	"os"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/runtime/parallel"
	"github.com/fmoe/fmoe/runtime/routetrace"
)

// placement puts the experts on n devices: balanced by the counts of
// --expert-load (or of --route-trace) when given, else nil (the model
// spreads them evenly by number). It says on stderr how even the load is.
func placement(c *cli.Context, n int) (*parallel.Placement, error) {
	path, flag := c.String("expert-load"), "--expert-load"
	if path == "" {
		path, flag = c.String("route-trace"), "--route-trace"
	}
	if path == "" {
		fmt.Fprintf(os.Stderr, "experts: spread evenly by number over %d devices (--expert-load places them by measured load)\n", n)
		return nil, nil
	}
	tr, err := routetrace.Load(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	man, err := format.Open(c.String("model"))
	if err != nil {
		return nil, err
	}
	if cf := &man.Config; tr.Layers != cf.NumHiddenLayers || tr.Experts != cf.NumExperts {
		return nil, fmt.Errorf("%s %s: a trace of %d layers × %d experts, the model has %d × %d", flag, path, tr.Layers, tr.Experts, cf.NumHiddenLayers, cf.NumExperts)
	}
	load := parallel.TraceLoad(tr)
	p, err := parallel.Partition(load, n)
	if err != nil {
		return nil, err
	}
	loads := p.Loads(load)
	var total int64
	for _, l := range loads {
		total += l
	}
	fmt.Fprintf(os.Stderr, "experts: placed by the load of %s: heaviest device %.1f%% of the picks (even: %.1f%%)\n",
		path, 100*float64(slices.Max(loads))/float64(max(total, 1)), 100/float64(n))
	return p, nil
}
