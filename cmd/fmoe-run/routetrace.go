package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/runtime/model"
	"github.com/fmoe/fmoe/runtime/routetrace"
)

var routeTraceFlag = &cli.StringFlag{Name: "route-trace", Usage: "BENCHMARKS ONLY: replace the router's choice with the experts and weights of this routing trace `FILE` (made by fmoe-pack route-trace); the text generated is then meaningless"}

// useRouteTrace loads --route-trace, when given, and sets it as the
// session's router for the positions 0…positions-1 the run needs.
func useRouteTrace(c *cli.Context, m *model.Model, sess *model.Session, positions int) error {
	path := c.String("route-trace")
	if path == "" {
		return nil
	}
	tr, err := routetrace.Load(path)
	if err != nil {
		return err
	}
	cfg := &m.Config
	if err := tr.Check(cfg.NumHiddenLayers, cfg.NumExperts, m.K, positions); err != nil {
		return fmt.Errorf("route trace %s: %w", path, err)
	}
	// Not RoutesAhead yet: the trace's picks on the device (devTable) have
	// run on devTier only; the CLI takes them once a GPU has checked them
	// (TestDeviceRoutedTable's tableOn).
	sess.Routes = tr
	return nil
}
