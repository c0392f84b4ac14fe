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
	name := c.String("backend")
	if !slices.Contains(backends.Names, name) {
		return nil, cliutil.UsageError("--backend %q: want one of %s", name, strings.Join(backends.Names, ", "))
	}
	var log bytes.Buffer
	be, err := backends.Open(name, backends.Options{Threads: c.Int("threads"), Log: &log})
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
