package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backends"
	"github.com/fmoe/fmoe/runtime/model"
)

// openBackend opens the --backend choice; auto reports on stderr what it picked and why.
func openBackend(c *cli.Context) (backend.Backend, error) {
	return backends.Open(c.String("backend"), backends.Options{Threads: c.Int("threads"), Log: os.Stderr})
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
