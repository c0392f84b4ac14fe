package cuda

import (
	"container/heap"
	"container/list"
	"fmt"
	"math"

	"github.com/fmoe/fmoe/runtime/routetrace"
)

// ExpertKey names a routed expert: its layer and its id within the layer.
type ExpertKey struct{ Layer, ID int }

// Policy chooses which cached expert to evict. The cache calls Access on
// every lookup that hits, Insert when it admits an expert and Remove when
// one leaves; Victim names the expert to evict next among those keep does
// not protect (the experts the current layer still uses). Implementations
// are pure bookkeeping, so the trace simulations (SimulatePolicy) run the
// very code the cache runs.
type Policy interface {
	Access(k ExpertKey)
	Insert(k ExpertKey)
	Remove(k ExpertKey)
	Victim(keep func(ExpertKey) bool) (ExpertKey, bool)
}

// DefaultPolicy and DefaultHalfLife (in tokens) are the cache's policy:
// frequency with decay, chosen on routing traces (TestPolicyStudy;
// docs/benchmarks.md has the figures): up to 7 points above LRU at 32
// experts per layer, 0–2 at 64–128, equal at 307 (an H200), and far above
// plain LFU, which hoards experts that were hot long ago.
const (
	DefaultPolicy   = "decay"
	DefaultHalfLife = 16
)

// PolicyNames are the policies NewPolicy knows.
var PolicyNames = []string{"lru", "lfu", "decay"}

// NewPolicy returns the named policy: "lru" (least recently used), "lfu"
// (least frequently used since admission, recency breaking ties) or
// "decay" (frequency with exponential decay, half-life halfLife accesses).
func NewPolicy(name string, halfLife float64) (Policy, error) {
	switch name {
	case "lru":
		return newLRU(), nil
	case "lfu":
		return newFreq(math.Inf(1)), nil
	case "decay":
		if !(halfLife > 0) {
			return nil, fmt.Errorf("cuda: decay policy half-life %g is not positive", halfLife)
		}
		return newFreq(halfLife), nil
	}
	return nil, fmt.Errorf("cuda: unknown cache policy %q (want lru, lfu or decay)", name)
}

type lru struct {
	l *list.List // front: most recent
	e map[ExpertKey]*list.Element
}

func newLRU() *lru { return &lru{l: list.New(), e: map[ExpertKey]*list.Element{}} }

func (p *lru) Access(k ExpertKey) {
	if e := p.e[k]; e != nil {
		p.l.MoveToFront(e)
	}
}

func (p *lru) Insert(k ExpertKey) { p.e[k] = p.l.PushFront(k) }

func (p *lru) Remove(k ExpertKey) {
	if e := p.e[k]; e != nil {
		p.l.Remove(e)
		delete(p.e, k)
	}
}

func (p *lru) Victim(keep func(ExpertKey) bool) (ExpertKey, bool) {
	for e := p.l.Back(); e != nil; e = e.Prev() {
		if k := e.Value.(ExpertKey); keep == nil || !keep(k) {
			return k, true
		}
	}
	return ExpertKey{}, false
}

// freq scores each expert by its accesses, each weighted 2^(-age/halfLife)
// (halfLife +Inf: plain counts). The score is kept as the time-invariant
// log(score)+now·λ (λ = ln2/halfLife), so that the heap's order does not
// change as the clock moves; recency breaks ties.
type freq struct {
	lambda float64
	clock  float64
	h      freqHeap
	e      map[ExpertKey]*freqItem
}

type freqItem struct {
	k     ExpertKey
	score float64 // log(score) + clock·λ at the last access
	last  float64
	i     int
}

func newFreq(halfLife float64) *freq {
	return &freq{lambda: math.Ln2 / halfLife, e: map[ExpertKey]*freqItem{}}
}

func (p *freq) Access(k ExpertKey) {
	p.clock++
	it := p.e[k]
	if it == nil {
		return
	}
	// log(s·2^(-Δ/h) + 1) + now·λ, from s's stored form.
	cur := it.score - p.clock*p.lambda // log of the decayed score now
	it.score = cur + math.Log1p(math.Exp(-cur)) + p.clock*p.lambda
	it.last = p.clock
	heap.Fix(&p.h, it.i)
}

func (p *freq) Insert(k ExpertKey) {
	p.clock++
	it := &freqItem{k: k, score: p.clock * p.lambda, last: p.clock}
	p.e[k] = it
	heap.Push(&p.h, it)
}

func (p *freq) Remove(k ExpertKey) {
	if it := p.e[k]; it != nil {
		heap.Remove(&p.h, it.i)
		delete(p.e, k)
	}
}

func (p *freq) Victim(keep func(ExpertKey) bool) (ExpertKey, bool) {
	var held []*freqItem
	defer func() {
		for _, it := range held {
			heap.Push(&p.h, it)
		}
	}()
	for p.h.Len() > 0 {
		it := p.h[0]
		if keep == nil || !keep(it.k) {
			return it.k, true
		}
		held = append(held, heap.Pop(&p.h).(*freqItem))
	}
	return ExpertKey{}, false
}

type freqHeap []*freqItem

func (h freqHeap) Len() int { return len(h) }
func (h freqHeap) Less(i, j int) bool {
	if h[i].score != h[j].score {
		return h[i].score < h[j].score
	}
	return h[i].last < h[j].last
}
func (h freqHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].i = i; h[j].i = j }
func (h *freqHeap) Push(x any)   { it := x.(*freqItem); it.i = len(*h); *h = append(*h, it) }
func (h *freqHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// SimulatePolicy replays a routing trace through one cache of capacity
// experts (all layers together, as the GPU tier is) run by p, with the
// runtime's order and the cache's rules: a layer's hits are looked up
// first and stay in use, then its misses are bound, evicting only experts
// the layer does not use (when every held one is in use, the expert goes
// uncached). It returns the hit rate over tokens [from, Tokens).
func SimulatePolicy(p Policy, capacity int, tr *routetrace.Trace, from int) float64 {
	held := map[ExpertKey]bool{}
	var hits, total int
	cur := map[ExpertKey]bool{}
	keep := func(k ExpertKey) bool { return cur[k] }
	for t := 0; t < tr.Tokens; t++ {
		for l := 0; l < tr.Layers; l++ {
			ids, _ := tr.At(t, l)
			clear(cur)
			for _, id := range ids {
				cur[ExpertKey{l, int(id)}] = true
			}
			if t >= from {
				total += len(ids)
			}
			for _, id := range ids {
				if k := (ExpertKey{l, int(id)}); held[k] {
					if t >= from {
						hits++
					}
					p.Access(k)
				}
			}
			for _, id := range ids {
				k := ExpertKey{l, int(id)}
				if held[k] || capacity <= 0 {
					continue
				}
				if len(held) >= capacity {
					v, ok := p.Victim(keep)
					if !ok {
						continue
					}
					p.Remove(v)
					delete(held, v)
				}
				held[k] = true
				p.Insert(k)
			}
		}
	}
	if total == 0 {
		return 0
	}
	return float64(hits) / float64(total)
}
