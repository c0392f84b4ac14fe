package routetrace

import "math"

// Cache is an expert cache policy for one layer, for simulation: Access
// looks id up, returns whether it was held, and updates the cache.
type Cache interface {
	Access(id int) bool
}

// LRU is a least-recently-used cache of a fixed number of entries.
type LRU struct {
	size, n    int
	prev, next []int32 // doubly linked list by id; index experts is the head
	in         []bool
}

// NewLRU returns an empty LRU cache of size entries over experts ids.
func NewLRU(size, experts int) *LRU {
	c := &LRU{size: size, prev: make([]int32, experts+1), next: make([]int32, experts+1), in: make([]bool, experts)}
	h := int32(experts)
	c.prev[h], c.next[h] = h, h
	return c
}

// Access implements Cache.
func (c *LRU) Access(id int) bool {
	h := int32(len(c.in))
	e := int32(id)
	hit := c.in[id]
	if hit {
		c.unlink(e)
	} else {
		if c.size <= 0 {
			return false
		}
		if c.n == c.size {
			old := c.prev[h] // least recent at the tail
			c.unlink(old)
			c.in[old] = false
			c.n--
		}
		c.in[id] = true
		c.n++
	}
	// most recent at the head
	c.next[e], c.prev[e] = c.next[h], h
	c.prev[c.next[h]] = e
	c.next[h] = e
	return hit
}

func (c *LRU) unlink(e int32) {
	c.next[c.prev[e]] = c.next[e]
	c.prev[c.next[e]] = c.prev[e]
}

// Simulate runs every layer's access stream through its own cache from
// newCache and returns each layer's hit rate over tokens [from, to) (the
// tokens before from only warm the cache).
func Simulate(tr *Trace, newCache func(layer int) Cache, from, to int) []float64 {
	to = min(to, tr.Tokens)
	rates := make([]float64, tr.Layers)
	for l := range rates {
		c := newCache(l)
		hits := 0
		for t := 0; t < to; t++ {
			ids, _ := tr.At(t, l)
			for _, e := range ids {
				if c.Access(int(e)) && t >= from {
					hits++
				}
			}
		}
		rates[l] = float64(hits) / float64(max(to-from, 1)*tr.K)
	}
	return rates
}

// SimulateLRU is Simulate with an LRU cache of size entries per layer.
func SimulateLRU(tr *Trace, size, from, to int) []float64 {
	return Simulate(tr, func(int) Cache { return NewLRU(size, tr.Experts) }, from, to)
}

// Distinct is, per layer, the mean share of the layer's experts used in
// windows of window consecutive tokens (whole windows within the first to
// tokens, from token 0).
func Distinct(tr *Trace, window, to int) []float64 {
	to = min(to, tr.Tokens)
	out := make([]float64, tr.Layers)
	seen := make([]int, tr.Experts)
	stamp := 0
	for l := range out {
		nw, sum := 0, 0
		for w0 := 0; w0+window <= to; w0 += window {
			stamp++
			for t := w0; t < w0+window; t++ {
				ids, _ := tr.At(t, l)
				for _, e := range ids {
					if seen[e] != stamp {
						seen[e] = stamp
						sum++
					}
				}
			}
			nw++
		}
		if nw > 0 {
			out[l] = float64(sum) / float64(nw*tr.Experts)
		}
	}
	return out
}

// overlaps is, for layer l, how many of token t's experts token t-1 also
// used, for t in [1, to).
func overlaps(tr *Trace, l, to int) []float64 {
	var o []float64
	for t := 1; t < to; t++ {
		a, _ := tr.At(t, l)
		b, _ := tr.At(t-1, l)
		o = append(o, float64(Shared(a, b)))
	}
	return o
}

// Shared counts the expert ids of a that b holds too (each id of a once).
func Shared[T comparable](a, b []T) int {
	n := 0
	for _, e := range a {
		for _, f := range b {
			if e == f {
				n++
				break
			}
		}
	}
	return n
}

// Overlap is, per layer, the mean share of a token's K experts that the
// token before it also used, over the first to tokens.
func Overlap(tr *Trace, to int) []float64 {
	to = min(to, tr.Tokens)
	out := make([]float64, tr.Layers)
	for l := range out {
		o := overlaps(tr, l, to)
		out[l] = mean(o) / float64(tr.K)
	}
	return out
}

// CrossLayer is the mean, over pairs of adjacent layers, of the Pearson
// correlation across tokens of their consecutive-token overlaps: whether
// one layer reusing its experts says anything about the next doing so.
func CrossLayer(tr *Trace, to int) float64 {
	to = min(to, tr.Tokens)
	if tr.Layers < 2 || to < 3 {
		return 0
	}
	var sum float64
	prev := overlaps(tr, 0, to)
	for l := 1; l < tr.Layers; l++ {
		cur := overlaps(tr, l, to)
		sum += pearson(prev, cur)
		prev = cur
	}
	return sum / float64(tr.Layers-1)
}

func pearson(a, b []float64) float64 {
	ma, mb := mean(a), mean(b)
	var sab, saa, sbb float64
	for i := range a {
		sab += (a[i] - ma) * (b[i] - mb)
		saa += (a[i] - ma) * (a[i] - ma)
		sbb += (b[i] - mb) * (b[i] - mb)
	}
	if saa == 0 || sbb == 0 {
		return 0
	}
	return sab / math.Sqrt(saa*sbb)
}

func mean(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// Range is the least, mean and greatest of per-layer figures.
func Range(x []float64) (lo, avg, hi float64) {
	if len(x) == 0 {
		return 0, 0, 0
	}
	lo, hi = x[0], x[0]
	for _, v := range x {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, mean(x), hi
}
