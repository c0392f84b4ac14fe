package cuda

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The decode matvec's defaults on CUDA (matvec.h's fast kernel). Rows and
// Unroll are compiled in (-DMV_NR, -DMV_U); Warps and BlocksPerSM shape
// the launch; Depth is compiled in too (-DMV_DEPTH). No setting changes a result: each lane of a warp sums its
// row's chunks lane, lane+32, lane+64, … in that order whatever the
// rows per warp, chunks in flight, warps or blocks (see matvec.h), so a
// new default changes speed only. BenchmarkMatVecSweep measures the
// candidates; Metal keeps matvec.h's own MV_NR and MV_U.
const (
	DefaultMatvecRows        = 2 // MV_NR: rows per warp
	DefaultMatvecUnroll      = 4 // MV_U: 16-byte chunks per lane in flight per row
	DefaultMatvecWarps       = 8 // warps per block (halved to 4 for matrices too short to fill the SMs)
	DefaultMatvecBlocksPerSM = 4 // persistent blocks per SM
	DefaultMatvecDepth       = 1 // MV_DEPTH: batches of chunks in flight per lane (2: the next loads while this one computes)
	// MV_MINB: blocks of 256 threads an SM must be able to hold, the compiler capping registers to fit (1: no cap)
	DefaultMatvecMinBlocks = 1
)

// defaultMatvec is the setting the constants above make.
var defaultMatvec = MatvecConfig{DefaultMatvecRows, DefaultMatvecUnroll, DefaultMatvecWarps, DefaultMatvecBlocksPerSM, DefaultMatvecDepth, DefaultMatvecMinBlocks}

// The batched matvec's defaults (MatVecBatch, ExpertsIndexed: a decode
// step's routed experts), compiled as a module of their own when they
// differ from the matvec's: BenchmarkMatVecSweep's best for the batched
// expert launches (20 gate/up jobs 39.4 → 31.6 µs, 10 down jobs 25.1 →
// 19.9, docs/benchmarks.md), where a lone projection gains nothing from
// it. As for the matvec, no setting changes a result (TestMatVecBatch
// compares every job with its MatMul bit for bit).
const (
	DefaultBatchMatvecRows   = 4
	DefaultBatchMatvecUnroll = 2
)

var defaultBatchMatvec = MatvecConfig{DefaultBatchMatvecRows, DefaultBatchMatvecUnroll, DefaultMatvecWarps, DefaultMatvecBlocksPerSM, DefaultMatvecDepth, DefaultMatvecMinBlocks}

// MatvecConfig tunes the decode matvec. A zero field takes FMOE_CUDA_MV's
// value, then the default.
type MatvecConfig struct {
	Rows        int // rows per warp (MV_NR), 1 to 8
	Unroll      int // 16-byte chunks per lane in flight per row (MV_U), 1 to 16
	Warps       int // warps per block, 1 to 32
	BlocksPerSM int // persistent blocks per SM, 1 to 64
	Depth       int // batches of chunks in flight per lane (MV_DEPTH), 1 or 2
	MinBlocks   int // 256-thread blocks an SM must hold (MV_MINB: registers capped to fit), 1 to 8
}

// mvKeys are FMOE_CUDA_MV's keys and each one's range.
var mvKeys = []struct {
	name   string
	lo, hi int
	field  func(*MatvecConfig) *int
}{
	{"nr", 1, 8, func(c *MatvecConfig) *int { return &c.Rows }},
	{"u", 1, 16, func(c *MatvecConfig) *int { return &c.Unroll }},
	{"warps", 1, 32, func(c *MatvecConfig) *int { return &c.Warps }},
	{"bpsm", 1, 64, func(c *MatvecConfig) *int { return &c.BlocksPerSM }},
	{"depth", 1, 2, func(c *MatvecConfig) *int { return &c.Depth }},
	{"minb", 1, 8, func(c *MatvecConfig) *int { return &c.MinBlocks }},
}

// ParseMatvecConfig reads FMOE_CUDA_MV's form, comma-separated key=value
// pairs such as "nr=4,u=4,warps=8,bpsm=4,depth=2,minb=4"; keys left out
// stay zero.
func ParseMatvecConfig(s string) (MatvecConfig, error) {
	var c MatvecConfig
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok {
			return MatvecConfig{}, fmt.Errorf("%q is not key=value (keys: nr, u, warps, bpsm, depth, minb)", part)
		}
		i := mvKey(k)
		if i < 0 {
			return MatvecConfig{}, fmt.Errorf("unknown key %q (want nr, u, warps, bpsm, depth or minb)", k)
		}
		if seen[k] {
			return MatvecConfig{}, fmt.Errorf("%s given twice", k)
		}
		seen[k] = true
		m := mvKeys[i]
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return MatvecConfig{}, fmt.Errorf("%s=%q: want a whole number from %d to %d", k, v, m.lo, m.hi)
		}
		if n < m.lo || n > m.hi {
			return MatvecConfig{}, fmt.Errorf("%s=%d: want %d to %d", k, n, m.lo, m.hi)
		}
		*m.field(&c) = n
	}
	return c, nil
}

func mvKey(k string) int {
	for i, m := range mvKeys {
		if m.name == k {
			return i
		}
	}
	return -1
}

// check reports a field outside its range; zero (unset) is allowed.
func (c MatvecConfig) check() error {
	for _, m := range mvKeys {
		if v := *m.field(&c); v != 0 && (v < m.lo || v > m.hi) {
			return fmt.Errorf("%s=%d: want %d to %d", m.name, v, m.lo, m.hi)
		}
	}
	return nil
}

// ConfigError is a bad matvec setting (Options.Matvec or FMOE_CUDA_MV):
// the user's mistake, which a caller that falls back to the CPU when CUDA
// is unavailable should report instead.
type ConfigError struct{ msg string }

func (e *ConfigError) Error() string { return e.msg }

// IsConfigError reports whether err is, or wraps, a ConfigError.
func IsConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}

// resolve fills c's zero fields from env (FMOE_CUDA_MV's value), then the
// defaults.
func (c MatvecConfig) resolve(env string) (MatvecConfig, error) {
	return c.resolveFrom("Options.Matvec", "FMOE_CUDA_MV", env, defaultMatvec)
}

// resolveFrom is resolve for the option named opt, the environment
// variable named name (whose value is env) and the defaults def.
func (c MatvecConfig) resolveFrom(opt, name, env string, def MatvecConfig) (MatvecConfig, error) {
	if err := c.check(); err != nil {
		return c, &ConfigError{fmt.Sprintf("cuda: %s: %v", opt, err)}
	}
	e, err := ParseMatvecConfig(env)
	if err != nil {
		return c, &ConfigError{fmt.Sprintf("cuda: %s=%q: %v", name, env, err)}
	}
	for _, m := range mvKeys {
		p := m.field(&c)
		if *p == 0 {
			*p = *m.field(&e)
		}
		if *p == 0 {
			*p = *m.field(&def)
		}
	}
	return c, nil
}

// String is the FMOE_CUDA_MV form of c.
func (c MatvecConfig) String() string {
	s := fmt.Sprintf("nr=%d,u=%d,warps=%d,bpsm=%d,depth=%d", c.Rows, c.Unroll, c.Warps, c.BlocksPerSM, c.Depth)
	if c.MinBlocks > 1 {
		s += fmt.Sprintf(",minb=%d", c.MinBlocks)
	}
	return s
}

// defines are the compile options of c's module: only Rows, Unroll, Depth
// and MinBlocks are compiled in, so configurations differing in Warps or
// BlocksPerSM share one module. Depth and MinBlocks at 1 (or unset) add
// nothing, so the modules cached before they existed keep their keys.
func (c MatvecConfig) defines() []string {
	d := []string{fmt.Sprintf("-DMV_NR=%d", c.Rows), fmt.Sprintf("-DMV_U=%d", c.Unroll)}
	if c.Depth > 1 {
		d = append(d, fmt.Sprintf("-DMV_DEPTH=%d", c.Depth))
	}
	if c.MinBlocks > 1 {
		d = append(d, fmt.Sprintf("-DMV_MINB=%d", c.MinBlocks))
	}
	return d
}
