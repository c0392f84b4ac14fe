package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backends"
	"github.com/fmoe/fmoe/runtime/model"
)

// openDevices opens the --backend choice on the --gpus devices into o
// (Backend, Devices, Collective and, over several, the Placement); auto
// says on stderr what it picked and, in a few words, why (in full with
// --verbose). It returns the backends, for closing should Open fail, and
// the per-expert load it read (--expert-load, or over several devices
// --route-trace), or nil.
func openDevices(c *cli.Context, o *model.Options) ([]backend.Backend, [][]int64, error) {
	if err := checkModelFlags(c); err != nil {
		return nil, nil, err
	}
	ids, err := backends.ParseDevices(c.String("gpus"))
	if err != nil {
		return nil, nil, cliutil.UsageError("%v", err)
	}
	loadPath := c.String("expert-load")
	load, err := expertLoad(c, "--expert-load", loadPath)
	if err != nil {
		return nil, nil, err
	}
	var log bytes.Buffer
	bes, coll, err := backends.OpenDevices(c.String("backend"), ids, backends.Options{Threads: c.Int("threads"), Log: &log})
	writeBackendLog(os.Stderr, log.String(), c.Bool("verbose"))
	if backends.BadDeviceList(err) {
		return nil, nil, cliutil.UsageError("--gpus %s: %v", c.String("gpus"), strings.TrimPrefix(err.Error(), "--gpus: "))
	}
	if err != nil {
		return nil, nil, err
	}
	o.Backend, o.Devices, o.Collective = bes[0], bes[1:], coll
	if len(bes) > 1 && load == nil && c.String("route-trace") != "" {
		loadPath = c.String("route-trace")
		load, err = expertLoad(c, "--route-trace", loadPath)
	}
	if len(bes) > 1 && err == nil {
		o.Placement, err = placement(load, loadPath, len(bes))
	}
	if err != nil {
		for _, be := range bes {
			be.Close()
		}
		return nil, nil, err
	}
	if len(bes) == 1 && c.String("expert-load") != "" && !c.Bool("preload") {
		fmt.Fprintln(os.Stderr, "--expert-load: one device, so every expert is on it (the load places experts over several --gpus, and orders --preload)")
	}
	return bes, load, nil
}

func writeBackendLog(w io.Writer, log string, verbose bool) {
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if line == "" {
			continue
		}
		if !verbose {
			line = shortBackendLine(line)
		}
		fmt.Fprintln(w, line)
	}
}

// shortBackendLine keeps the gist of why auto passed over a GPU:
// "backend: cpu (cuda: no CUDA driver (libcuda.so.1): libcuda.so.1: cannot
// open shared object file…)" becomes "backend: cpu (no CUDA driver)".
func shortBackendLine(line string) string {
	head, why, ok := strings.Cut(line, " (")
	if !ok {
		return line
	}
	why = strings.TrimSuffix(why, ")")
	var short []string
	for _, r := range strings.Split(why, "; ") {
		for _, b := range backends.Names {
			r = strings.TrimPrefix(r, b+": ")
		}
		if i := strings.IndexAny(r, "(:"); i > 0 {
			r = r[:i]
		}
		short = append(short, strings.TrimSpace(r))
	}
	return head + " (" + strings.Join(short, "; ") + ")"
}

// checkModelFlags refuses model flags out of range before anything is
// opened (--k above the model's expert count is found when it is opened).
func checkModelFlags(c *cli.Context) error {
	if name := c.String("backend"); !slices.Contains(backends.Names, name) {
		return cliutil.UsageError("--backend %q: want one of %s", name, strings.Join(backends.Names, ", "))
	}
	if d := c.String("model"); d != "" {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			return cliutil.UsageError("--model %s: not a directory", d)
		}
	}
	if c.IsSet("k") && c.Int("k") < 1 {
		return cliutil.UsageError("--k must be at least 1 (got %d)", c.Int("k"))
	}
	if c.Int("threads") < 0 {
		return cliutil.UsageError("--threads must be 0 (all cores) or more (got %d)", c.Int("threads"))
	}
	return nil
}

// parseCacheSize reads a --gpu-cache value: auto, 0 (off) or a size in
// bytes with an optional K, M, G or T suffix (powers of 1024; a trailing
// B or iB is accepted).
func parseCacheSize(s string) (int64, error) {
	switch s {
	case "auto", "":
		return model.GPUCacheAuto, nil
	case "0":
		return model.GPUCacheOff, nil
	}
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(s), "B"), "I")
	mul := 1.0
	if n := len(t); n > 0 {
		if i := strings.IndexByte("KMGT", t[n-1]); i >= 0 {
			mul, t = math.Pow(1024, float64(i+1)), t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || v*mul > 1<<62 {
		return 0, fmt.Errorf("%q is not a size (want auto, 0, or a number of bytes such as 40G or 512M)", s)
	}
	if b := int64(v * mul); b > 0 {
		return b, nil
	}
	return model.GPUCacheOff, nil
}
