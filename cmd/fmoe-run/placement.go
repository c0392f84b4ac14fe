package main

import (
	"fmt"
	"os"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/runtime/parallel"
	"github.com/fmoe/fmoe/runtime/routetrace"
)

// expertLoad reads the per-expert counts of a routing trace (flag names
// where the path came from) and checks their shape against the model. It
// runs before any device is opened for --expert-load, so a bad file is a
// usage error (exit 2) whatever the device count; --route-trace stands in
// for it over several devices only (useRouteTrace checks that trace for
// the run). It returns nil for an empty path.
func expertLoad(c *cli.Context, flag, path string) ([][]int64, error) {
	if path == "" {
		return nil, nil
	}
	tr, err := routetrace.Load(path)
	if err != nil {
		return nil, cliutil.UsageError("%s: %v", flag, err)
	}
	man, err := format.Open(c.String("model"))
	if err != nil {
		return nil, err
	}
	if cf := &man.Config; tr.Layers != cf.NumHiddenLayers || tr.Experts != cf.NumExperts {
		return nil, cliutil.UsageError("%s %s: a trace of %d layers × %d experts, the model has %d × %d (make one for this model with fmoe-pack route-trace)",
			flag, path, tr.Layers, tr.Experts, cf.NumHiddenLayers, cf.NumExperts)
	}
	return parallel.TraceLoad(tr), nil
}

// placement puts the experts on n devices: balanced by load when given
// (expertLoad), else nil (the model spreads them evenly by number). It says
// on stderr how even the load is.
func placement(load [][]int64, path string, n int) (*parallel.Placement, error) {
	if load == nil {
		fmt.Fprintf(os.Stderr, "experts: spread evenly by number over %d devices (--expert-load FILE places them by a routing trace's counts)\n", n)
		return nil, nil
	}
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
