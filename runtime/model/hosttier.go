package model

import (
	"container/list"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/runtime/backend"
)

// hostTier is the host tier of experts (Options.HostCache): buffers in the
// backend's host memory (CUDA: pinned) that keep experts across steps,
// keyed by (layer, expert), least recently used first out, within a byte
// budget. It sees only what the GPU tier misses. A hit is bound straight
// from its buffer (one DMA from pinned memory) with no read; a miss is read
// into the buffer of the expert it evicts. All buffers are allocated at
// Open: HostAlloc need not be safe beside ops running on another goroutine.
type hostTier struct {
	mu    sync.Mutex
	slots [][]byte // stride bytes each, aligned
	raw   [][]byte // the allocations, for HostFree
	host  backend.HostAllocator
	free  []int
	m     map[[2]int]*hentry
	lru   *list.List // of *hentry, most recent first
	// exclusive: the tier is the GPU tier's victim cache (demote.go).
	// Set between steps, by the step's goroutine.
	exclusive bool
}

type hentry struct {
	key   [2]int // layer, expert
	slot  int
	pins  int  // reads or binds in flight
	ready bool // the slot holds the expert's bytes
	// dropped: drop removed it while pinned; the last put frees the slot.
	dropped bool
	el      *list.Element
}

// hostChunk is how many slots one HostAlloc holds (~450 MB at 397B sizes):
// fewer, larger pinned allocations than one per slot.
const hostChunk = 64

func newHostTier(budget int64, stride int, h backend.HostAllocator) (*hostTier, error) {
	n := int(budget / int64(stride))
	t := &hostTier{host: h, m: map[[2]int]*hentry{}, lru: list.New()}
	for len(t.slots) < n {
		k := min(hostChunk, n-len(t.slots))
		var b []byte
		var err error
		if h != nil {
			b, err = h.HostAlloc(k * stride)
			if err == nil && !aligned(b) {
				err = errors.Join(errors.New("HostAlloc memory is not aligned"), h.HostFree(b))
			}
		} else {
			b = alignedBuf(k * stride)
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("model: host tier of %s: %w", gib(budget), err), t.close())
		}
		t.raw = append(t.raw, b)
		for i := 0; i < k; i++ {
			t.free = append(t.free, len(t.slots))
			t.slots = append(t.slots, b[i*stride:(i+1)*stride:(i+1)*stride])
		}
	}
	return t, nil
}

func (t *hostTier) close() error {
	var errs []error
	if t.host != nil {
		for _, b := range t.raw {
			errs = append(errs, t.host.HostFree(b))
		}
	}
	t.raw, t.slots = nil, nil
	return errors.Join(errs...)
}

// get returns the buffer for expert (l, id), pinned until put: hit says
// it already holds the expert; otherwise the caller reads it in and calls
// put with ok set once it has. nil means no buffer is free of use.
func (t *hostTier) get(l, id int) (e *hentry, buf []byte, hit bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := [2]int{l, id}
	if e := t.m[k]; e != nil {
		if !e.ready {
			// Being read by another (demote.go): not a buffer to share.
			return nil, nil, false
		}
		e.pins++
		t.lru.MoveToFront(e.el)
		return e, t.slots[e.slot], e.ready
	}
	slot := -1
	if n := len(t.free); n > 0 {
		slot, t.free = t.free[n-1], t.free[:n-1]
	} else {
		for el := t.lru.Back(); el != nil; el = el.Prev() {
			if v := el.Value.(*hentry); v.pins == 0 {
				t.lru.Remove(el)
				delete(t.m, v.key)
				slot = v.slot
				break
			}
		}
	}
	if slot < 0 {
		return nil, nil, false
	}
	e = &hentry{key: k, slot: slot, pins: 1}
	e.el = t.lru.PushFront(e)
	t.m[k] = e
	return e, t.slots[slot], false
}

// holds reports whether the tier holds expert (l, id)'s bytes.
func (t *hostTier) holds(l, id int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[[2]int{l, id}]
	return e != nil && e.ready
}

// lookup is get without a buffer for a miss: the entry of (l, id) pinned
// when the tier holds its bytes, else nil.
func (t *hostTier) lookup(l, id int) (e *hentry, buf []byte, hit bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e = t.m[[2]int{l, id}]
	if e == nil || !e.ready {
		return nil, nil, false
	}
	e.pins++
	t.lru.MoveToFront(e.el)
	return e, t.slots[e.slot], true
}

// drop forgets e's expert (it moved up to the GPU tier): its slot is free
// once no get holds it.
func (t *hostTier) drop(e *hentry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[e.key] != e {
		return // already evicted or dropped
	}
	t.lru.Remove(e.el)
	delete(t.m, e.key)
	if e.pins == 0 {
		t.free = append(t.free, e.slot)
		return
	}
	e.dropped = true
}

// put ends a get; filled reports that a miss's read succeeded (a failed
// one gives the slot back empty).
func (t *hostTier) put(e *hentry, filled bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e.pins--
	if filled {
		e.ready = true
	}
	if e.dropped {
		if e.pins == 0 {
			t.free = append(t.free, e.slot)
		}
		return
	}
	if !e.ready && e.pins == 0 {
		t.lru.Remove(e.el)
		delete(t.m, e.key)
		t.free = append(t.free, e.slot)
	}
}

// hostTierBudget cuts a host tier's budget to the bytes of set's expert
// blocks and spare slots more: the tier keeps each (layer, expert) once, so
// slots past those would pin memory nothing fills (a 16 GiB tier on a 4 GB
// model pins 16 GiB at Open). The spare slots are for an expert that moves
// up to the GPU tier while a bind still reads its slot (drop frees the slot
// at the bind's put) and comes back down before that: with none, a tier
// holding the whole model could evict one. The budget asked for is checked
// against the memory available before it is cut (checkHostCache): a mistake
// stays a mistake.
func hostTierBudget(budget int64, set *format.ExpertSet, spare int) int64 {
	var n int64
	for _, l := range set.Layers {
		n += int64(len(l.CRC32C)) // one a block (format.Validate)
	}
	return min(budget, (n+int64(spare))*set.Stride)
}

// checkHostCache refuses a host tier larger than the memory available
// (MemAvailable on Linux; elsewhere it is not checked).
func checkHostCache(budget int64) error {
	if budget < 0 {
		return fmt.Errorf("model: host tier of %d bytes", budget)
	}
	if budget == 0 {
		return nil
	}
	avail, total, ok := memAvailable()
	if ok && budget > avail {
		return fmt.Errorf("model: a host tier of %s does not fit: %s of memory is available (of %s)", gib(budget), gib(avail), gib(total))
	}
	return nil
}

// memAvailable reads MemAvailable and MemTotal from /proc/meminfo.
func memAvailable() (avail, total int64, ok bool) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "MemAvailable:":
			avail = v << 10
		case "MemTotal:":
			total = v << 10
		}
	}
	return avail, total, avail > 0
}

// hostWeights is expert (l, id)'s weights over its host-tier buffer,
// pinned (put it when done) when the tier holds the expert.
func (r *expertReader) hostWeights(l, id int) (*hentry, [3]backend.Weight, bool) {
	var w [3]backend.Weight
	if r.tier == nil || l < 0 || l >= len(r.files) {
		return nil, w, false
	}
	te, buf, hit := r.tier.lookup(l, id)
	if te == nil || !hit {
		return nil, w, false
	}
	if r.weightsOver(buf, &w) != nil {
		r.tier.put(te, false)
		return nil, w, false
	}
	return te, w, true
}
