package parallel

import (
	"errors"
	"fmt"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Collective exchanges buffers between the devices (ranks) of one run.
// Every call takes one buffer per rank, bufs[r] owned by rank r's backend,
// all of one length. The calls are collective: one goroutine issues them
// for every rank, as NCCL's group calls do in a single process.
type Collective interface {
	// Size is the number of ranks.
	Size() int
	// Broadcast copies bufs[root] into every other buffer (the normed
	// hidden state, before the experts of the other ranks run).
	Broadcast(bufs []backend.Buffer, root int) error
	// AllReduce sums the buffers element-wise and leaves the sum in every
	// one (the partial expert outputs).
	AllReduce(bufs []backend.Buffer) error
	Close() error
}

// Local is the in-process stand-in: N logical devices, each a backend of
// its own (on the CPU, N cpu backends), exchanged through host memory.
// AllReduce sums in rank order (((b0 + b1) + b2) …) in float32, so its
// result is the same on every run; a real transport's order differs (NCCL's
// ring or tree), which changes only the rounding.
type Local struct {
	bes  []backend.Backend
	host [][]float32
}

// NewLocal returns the stand-in over bes, rank r being bes[r].
func NewLocal(bes []backend.Backend) (*Local, error) {
	if len(bes) == 0 {
		return nil, errors.New("parallel: a collective of no devices")
	}
	return &Local{bes: bes, host: make([][]float32, len(bes))}, nil
}

func (c *Local) Size() int { return len(c.bes) }

func (c *Local) Close() error { return nil }

// check validates one call's buffers and sizes the host copies.
func (c *Local) check(op string, bufs []backend.Buffer) (int, error) {
	if len(bufs) != len(c.bes) {
		return 0, fmt.Errorf("parallel: %s of %d buffers over %d ranks", op, len(bufs), len(c.bes))
	}
	n := -1
	for r, b := range bufs {
		if b == nil {
			return 0, fmt.Errorf("parallel: %s: rank %d has no buffer", op, r)
		}
		if n >= 0 && b.Len() != n {
			return 0, fmt.Errorf("parallel: %s: rank %d's buffer holds %d values, rank 0's %d", op, r, b.Len(), n)
		}
		n = b.Len()
		if cap(c.host[r]) < n {
			c.host[r] = make([]float32, n)
		}
		c.host[r] = c.host[r][:n]
	}
	return n, nil
}

func (c *Local) Broadcast(bufs []backend.Buffer, root int) error {
	if _, err := c.check("broadcast", bufs); err != nil {
		return err
	}
	if root < 0 || root >= len(bufs) {
		return fmt.Errorf("parallel: broadcast from rank %d of %d", root, len(bufs))
	}
	if len(bufs) == 1 {
		return nil // one device: nothing to move, and no Read to wait on
	}
	src := c.host[root]
	if err := c.bes[root].Read(src, bufs[root]); err != nil {
		return fmt.Errorf("parallel: broadcast: rank %d: %w", root, err)
	}
	for r, b := range bufs {
		if r == root {
			continue
		}
		if err := c.bes[r].Write(b, src); err != nil {
			return fmt.Errorf("parallel: broadcast: rank %d: %w", r, err)
		}
	}
	return nil
}

func (c *Local) AllReduce(bufs []backend.Buffer) error {
	if _, err := c.check("all-reduce", bufs); err != nil {
		return err
	}
	if len(bufs) == 1 {
		return nil
	}
	for r, b := range bufs {
		if err := c.bes[r].Read(c.host[r], b); err != nil {
			return fmt.Errorf("parallel: all-reduce: rank %d: %w", r, err)
		}
	}
	sum := c.host[0]
	for _, h := range c.host[1:] {
		for i, v := range h {
			sum[i] += v
		}
	}
	for r, b := range bufs {
		if err := c.bes[r].Write(b, sum); err != nil {
			return fmt.Errorf("parallel: all-reduce: rank %d: %w", r, err)
		}
	}
	return nil
}
