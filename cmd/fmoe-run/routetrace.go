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
	// A trace's choice is a lookup: layers routed on the device take it
	// from an upload at each step's start (model.Session.RoutesAhead).
	sess.Routes, sess.RoutesAhead = tr, true
	return nil
}
