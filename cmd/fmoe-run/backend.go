package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backends"
)

// openBackend opens the --backend choice; auto reports on stderr what it picked and why.
func openBackend(c *cli.Context) (backend.Backend, error) {
	return backends.Open(c.String("backend"), backends.Options{Threads: c.Int("threads"), Log: os.Stderr})
}
