//go:build !linux

package model

import (
	"fmt"
	"os"
	"runtime"
)

// bypassesCache cannot read F_NOCACHE back on darwin; Open's own probe is
// the check there.
func bypassesCache(*os.File) (bool, error) { return true, nil }

func evict(*os.File) error { return fmt.Errorf("no page-cache eviction on %s", runtime.GOOS) }
