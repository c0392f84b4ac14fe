package model

import (
	"errors"

	"github.com/fmoe/fmoe/runtime/backend"
)

// Paced prefetches (Options.PrefetchPace, an experiment). A prefetch two
// layers ahead is queued at a layer's tail, behind the layer's misses;
// the next layer's misses, queued only when its ids return, then wait on
// the link for whatever of those copies is left (run 32's layer clock: a
// layer at K=10 whose misses queue so is ~0.25 ms slower than one with no
// prefetch at all). Paced, the predictions wait on the host instead: the
// tail issues Options.PrefetchPace of them behind the misses, whatever the
// link is doing (one covers the host's way to the next layer's read of its
// ids, about the link's idle time between two layers' misses), and the
// rest go one at a time, each when the link is idle, while the host waits
// for a layer's ids. The next misses then wait for at most that many.
// Predictions for a layer whose ids have returned are dropped unissued:
// its real picks are known, and its misses copy what it needs.

// pfWant is a prediction not yet issued: layer t's expert id.
type pfWant struct{ t, id int }

// linkPacer is the backend's LinkPacer when pacing is on; ok false
// otherwise (prefetches are then issued at once).
func (s *Session) linkPacer() (backend.LinkPacer, bool) {
	if s.m.prefetchPace <= 0 {
		return nil, false
	}
	lp, ok := s.m.ranks[0].be.(backend.LinkPacer)
	return lp, ok
}

// pace queues layer t's predicted ids and issues Options.PrefetchPace of
// the queue.
func (s *Session) pace(lp backend.LinkPacer, pf backend.ExpertPrefetcher, t int, ids []int) error {
	for _, id := range ids {
		s.pf.wants = append(s.pf.wants, pfWant{t, id})
	}
	return s.pump(lp, pf, s.m.prefetchPace)
}

// pump issues queued predictions, oldest first, while the link is idle;
// the first n that copy whether or not it is. A prediction that copies
// nothing (held already, not in the host tier) costs no link time and
// does not count.
func (s *Session) pump(lp backend.LinkPacer, pf backend.ExpertPrefetcher, n int) error {
	st := &s.pf
	for len(st.wants) > 0 {
		if n <= 0 {
			idle, err := lp.LinkIdle()
			if err != nil || !idle {
				return err
			}
		}
		w := st.wants[0]
		st.wants = st.wants[:copy(st.wants, st.wants[1:])]
		was := len(st.flight)
		if err := s.prefetchOne(pf, w.t, w.id); err != nil {
			return err
		}
		if len(st.flight) > was {
			n--
		}
	}
	return nil
}

// waitPaced is a ReadAsync's wait for layer ids, with the queue pumped
// while the ids are on their way.
func (s *Session) waitPaced(wait func() error) error {
	lp, ok := s.linkPacer()
	if !ok || len(s.pf.wants) == 0 {
		return wait()
	}
	pf, ok := s.prefetcher(1)
	for ok && len(s.pf.wants) > 0 {
		ready, err := lp.ReadReady()
		if err == nil && !ready {
			err = s.pump(lp, pf, 0)
		}
		if err != nil {
			return errors.Join(err, wait()) // the read is outstanding: waited for all the same
		}
		if ready {
			break
		}
	}
	return wait()
}

// dropWants forgets the queued predictions for layers up to l, whose ids
// have returned.
func (st *prefetchState) dropWants(l int) {
	keep := st.wants[:0]
	for _, w := range st.wants {
		if w.t > l {
			keep = append(keep, w)
		}
	}
	st.wants = keep
}
