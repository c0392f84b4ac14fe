package model

import (
	"github.com/fmoe/fmoe/runtime/backend"
)

// A miss rank beside a partly held layer routed on the device
// (docs/gpu-decode.md, session 29). Until session 29 a miss rank
// (Options.MissBackend, `fmoe-run --cpu-experts`) turned device routing
// off for every layer, so the GPU tier's layers went back to the host path
// (the router's logits read back, the top-K and the hits' launches on the
// host: run 19 measured it 0.05 ms a K=10 layer slower). Now such a layer
// stays on the device; once its ids are back the host gives the miss rank
// a share of the misses the host tier holds, which it computes apart
// (startApart) while the link carries the others, and writes its rows
// where the combine reads them (sendRows).
//
// The share is rounded per layer, not carried over as the host path's
// credit is (shareRepeats): an expert is indivisible, and one miss alone
// crosses the link faster (~0.14 ms for 7 MB at ~50 GB/s) than the CPUs
// compute it in place (~0.24 ms at run 26's ~29 GB/s), so the CPUs help
// only where the link would queue: at a share of 0.4 a layer's one miss
// stays on the link, two or three give the CPUs one, four give them two.
// The normed input the CPUs need comes back with the ids in the same read
// (the graph copies it beside them), so the share costs the layer no
// further sync.

// partShares reports whether a partly held layer reads its normed input
// back with its ids for a miss rank: the rank, a host tier it computes
// from, and room for both in one asynchronous read. Fixed for the model's
// life, as the graphs that copy the input are.
func (m *Model) partShares() bool {
	return m.miss > 0 && m.experts.tier != nil && 3*m.K+m.Config.HiddenSize <= backend.MaxAsyncRead
}

// shareArea is the read-back of a partly held layer with a miss rank: its
// K ids, the prediction's K ids and K weights (predArea), then its normed
// input.
func (s *Session) shareArea(r *run) backend.Buffer {
	return s.predArea(r, 3*s.m.K+s.m.Config.HiddenSize)
}

// stageShare queues, in a partly held layer's graph, the copy of its
// normed input xn into the share's read-back, after the ids and the
// prediction (moePartialRoute copies the ids).
func (s *Session) stageShare(r *run, xn backend.Buffer) {
	K, H := s.m.K, s.m.Config.HiddenSize
	r.do(s.m.be.Copy(r.view(s.shareArea(r), 3*K, H), xn))
}

// partCount is how many of a partly held layer's n misses the miss rank
// computes at share: n × share rounded to the nearest (halves up).
func partCount(n int, share float64) int {
	return int(float64(n)*share + 0.5)
}

// missCount is how many of a partly held layer's n misses the miss rank
// takes: the affine fits' count where they split (Options.MissAffine),
// else partCount at the share.
func (m *Model) missCount(n int) int {
	if m.tune != nil {
		if k, ok := m.tune.count(n); ok {
			return k
		}
	}
	return partCount(n, m.share())
}

// exploreEvery: with an automatic share, one in this many partly held
// layers whose rounded share leaves the CPUs or the link none of two or
// more misses gives that side one (explore).
const exploreEvery = 16

// explore keeps an automatic share measuring on the partly held layers.
// Rounded per layer, a share near either bound gives one side nothing in
// every layer of a few misses (from 0.75 with two misses, 0.84 with three,
// and at the 0.9 bound with up to five; below 0.25 with two, and at the
// 0.05 bound with up to nine): such a layer says nothing of the two rates
// (shareTuner.observe), so the share stayed where it was, right or not
// (TestCPUMissesAutoSlowLink found it frozen at 0.9 after one layer).
// autoMin and autoMax were meant to keep both sides measured; one layer in
// exploreEvery of those gives the empty side one expert, which costs that
// layer at most one expert on its slower side.
func (s *Session) explore(n, want int) int {
	if s.m.tune == nil || n < 2 || want > 0 && want < n {
		return want
	}
	s.explored++
	if s.explored%exploreEvery != 0 {
		return want
	}
	if want == 0 {
		return 1
	}
	return n - 1
}

// partSplit divides a partly held layer's misses between the link and the
// miss rank: an expert's first miss in the process crosses the link (the
// GPU tier admits it, as without a miss rank); of the repeat misses the
// host tier holds the rank takes the first partCount (explore's with an
// automatic share).
func (s *Session) partSplit(l int, miss []int) (link, cpu []int) {
	m := s.m
	t := m.experts.tier
	want := s.explore(len(miss), m.missCount(len(miss)))
	link, cpu, s.firsts = s.mixed[:0], s.cpuMiss[:0], 0
	for _, id := range miss {
		first := m.firstMiss(l, id)
		if first {
			s.firsts++
		}
		if !first && len(cpu) < want && t.holds(l, id) {
			cpu = append(cpu, id)
			continue
		}
		link = append(link, id)
	}
	s.mixed, s.cpuMiss = link, cpu
	return link, cpu
}

// partApart starts the miss rank's share of a partly held layer's misses
// on the normed input xh read back with the ids, and returns the misses
// left to the link (all of them, and no share, when the rank takes none).
func (s *Session) partApart(r *run, l int, miss []int, xh []float32, bufs []expertBufs) ([]int, *apartShare, error) {
	m := s.m
	link, cpu := s.partSplit(l, miss)
	if len(cpu) == 0 {
		return miss, nil, nil
	}
	mb := m.ranks[m.miss].be
	x := r.viewOn(mb, bufs[m.miss].xn, 0, len(xh))
	if r.err == nil {
		r.do(mb.Write(x, xh))
	}
	if r.err != nil {
		return nil, nil, r.err
	}
	ap, ok, err := s.startApart(l, cpu, x, bufs[m.miss])
	if err != nil || !ok {
		return miss, nil, err
	}
	m.stats.MissRank += int64(len(cpu))
	if tp := s.tm.p; tp != nil {
		tp.MissRank += int64(len(cpu))
	}
	return link, ap, nil
}

// admitShare copies the experts the miss rank computes for layer l (the
// last partSplit's) up to the GPU tier, as prefetches for the layer's next
// token (Options.MissAdmit). Computed in place they are never admitted, so
// an expert the tier once evicted stayed on the CPUs at each of its later
// picks: run 31's share cut the tier's hits from 75.5% to 71.2% (2.45 to
// 2.88 misses a layer). Queued after the layer's own copies and the next
// layer's prefetches, the copies take the link's idle time rather than
// the layer's; the layer's own rows still come from the CPUs.
func (s *Session) admitShare(l int) error {
	if !s.m.missAdmit {
		return nil
	}
	pf, ok := s.prefetcher(1)
	if !ok {
		return nil
	}
	for _, id := range s.cpuMiss {
		if err := s.prefetchOne(pf, l, id); err != nil {
			return err
		}
	}
	return nil
}
