package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backends"
)

// openBackend opens the --backend choice; auto says on stderr what it picked
// and, in a few words, why (in full with --verbose).
func openBackend(c *cli.Context) (backend.Backend, error) {
	if err := checkModelFlags(c); err != nil {
		return nil, err
	}
	var log bytes.Buffer
	be, err := backends.Open(c.String("backend"), backends.Options{Threads: c.Int("threads"), Log: &log})
	writeBackendLog(os.Stderr, log.String(), c.Bool("verbose"))
	return be, err
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
