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
	// A trace chooses ahead: on a backend that routes on the device its
	// picks are uploaded at each step's start and the layers run as they
	// would with the model's router (devTable; TestDeviceRoutedTable ran on
	// the H200 in session 16).
	sess.Routes, sess.RoutesAhead = tr, true
	return nil
}
