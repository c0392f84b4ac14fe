package main

import (
	"errors"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/internal/fsguard"
)

// exitErr turns an output refused for overlapping its input into a usage error (exit 2): the
// invocation is wrong, and nothing was touched.
func exitErr(err error) error {
	var oe *fsguard.OverlapError
	if errors.As(err, &oe) {
		return cliutil.UsageError("%v", err)
	}
	return err
}
