package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/internal/fsguard"
	"github.com/fmoe/fmoe/runtime/model"
	"github.com/fmoe/fmoe/runtime/routetrace"
)

var recordRouteFlag = &cli.StringFlag{Name: "record-route", Usage: "write the routing this run used (per token position and layer: the K expert ids and weights, prompt and generated tokens) to the routing trace `FILE` (docs/route-trace.md), for --expert-load, --route-trace or fmoe-pack route-stats; FILE must not exist"}

// checkRecordRoute refuses, before the model is opened (so before a long
// run), a --record-route path that exists, lies in the model's folder or is
// one of the run's inputs, or whose folder cannot be written: each a usage
// error (exit 2).
func checkRecordRoute(c *cli.Context) error {
	path := c.String("record-route")
	if path == "" {
		return nil
	}
	if _, err := os.Lstat(path); err == nil {
		return cliutil.UsageError("--record-route %s already exists (remove it or choose another file: a recording never replaces one)", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return cliutil.UsageError("--record-route %s: %v", path, err)
	}
	inputs := []fsguard.Path{{Label: "--model", Path: c.String("model")}}
	for _, f := range []string{"route-trace", "expert-load"} {
		if p := c.String(f); p != "" {
			inputs = append(inputs, fsguard.Path{Label: "--" + f, Path: p})
		}
	}
	if err := fsguard.CheckOutput(fsguard.Path{Label: "--record-route", Path: path}, inputs...); err != nil {
		return cliutil.UsageError("%v", err)
	}
	dir := filepath.Dir(path)
	probe, err := os.CreateTemp(dir, "."+filepath.Base(path)+".probe*")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the probe's name would only confuse
		}
		return cliutil.UsageError("--record-route %s: cannot write in %s: %v", path, dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return nil
}

// recordRoute sets a recorder as the session's route log when
// --record-route is given (nil otherwise).
func recordRoute(c *cli.Context, m *model.Model, sess *model.Session) (*routetrace.Recorder, error) {
	if c.String("record-route") == "" {
		return nil, nil
	}
	cfg := &m.Config
	r, err := routetrace.NewRecorder(cfg.NumHiddenLayers, cfg.NumExperts, m.K)
	if err != nil {
		return nil, fmt.Errorf("--record-route: %w", err)
	}
	sess.RouteLog = r
	return r, nil
}

// saveRecordedRoute writes what r recorded of a run with a prompt of
// prompt tokens (the file through a temporary name, renamed when
// complete) and says on stderr how to replay it.
func saveRecordedRoute(c *cli.Context, r *routetrace.Recorder, prompt int) error {
	if r == nil {
		return nil
	}
	path := c.String("record-route")
	tr, err := r.Trace()
	if err != nil {
		return fmt.Errorf("--record-route %s: %w", path, err)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("--record-route %s appeared during the run: not replaced (the recording is lost)", path)
	}
	if err := tr.Save(path); err != nil {
		return fmt.Errorf("--record-route %s: %w", path, err)
	}
	fmt.Fprintf(os.Stderr, "recorded the routing of %d token positions × %d layers, K=%d, to %s (replay it with --route-trace and --tokens %d or fewer)\n",
		tr.Tokens, tr.Layers, tr.K, path, max(tr.Tokens-prompt+1, 1))
	return nil
}
