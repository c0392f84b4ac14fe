package model

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/format/lz4file"
	"github.com/fmoe/fmoe/runtime/backend"
)

// expertReader preads routed experts into aligned host buffers. One expert
// is one contiguous block (gate, up, down), so one read per expert.
type expertReader struct {
	dir   string // the model directory, for messages
	set   *format.ExpertSet
	files []*os.File
	// lz4 replaces files when reading the LZ4 copy (Options.LZ4).
	lz4  []*lz4file.Layer
	proj [3]*format.Tensor // gate_proj, up_proj, down_proj
	par  int
	// pool bounds the host memory in flight to 2·par blocks: par being read
	// while up to par wait for (or are in) compute.
	pool chan []byte
	// direct: the files bypass the page cache (direct_*.go).
	direct bool
	// probe: mincore reports the truth for these files (timing only).
	probe bool
	// host, when set, allocated every pool buffer (all at open: the
	// backend need not allow HostAlloc beside ops running on another
	// goroutine); hostBufs are its allocations, for HostFree at Close.
	host     backend.HostAllocator
	hostBufs [][]byte
	// tier is the host tier (Options.HostCache), nil when off; hostHits
	// counts its hits (on the stream's own goroutine).
	tier     *hostTier
	dem      demoter // reads the GPU tier's evictions into tier (demote.go)
	hostHits int64
	// check and verified: which reads are checksummed (integrity.go).
	check    checkMode
	verified []verifiedSet
	// async: a read's checksum finishes beside the expert's compute;
	// pending are those checks, until awaitChecks (integrity.go).
	async   bool
	pending []*pendingCheck
	// work feeds the par readers, started at open and stopped at Close
	// (workers), which send each read to done (one stream at a time, each
	// takes every read it handed out).
	work    chan readJob
	done    chan *expert
	workers sync.WaitGroup
	free    chan *expert // finished read records (newExpert, recycle)
}

// readJob is one expert for a reader to read (l, id) and send to done.
type readJob struct {
	l, id int
	timed bool
	stay  bool // with exclusive tiers, a host-tier copy stays (cpumiss.go)
}

// expertOptions configure openExperts.
type expertOptions struct {
	par    int
	direct bool
	// host allocates the read buffers when the backend offers it.
	host backend.HostAllocator
	// lz4 reads the LZ4 copy of the set (lz4file.Dir) instead.
	lz4   bool
	check checkMode
	// async checks a read beside its compute (integrity.go).
	async bool
	// hostTier is the host tier's budget in bytes (0: none).
	hostTier int64
}

func openExperts(dir string, c *format.Config, set *format.ExpertSet, o expertOptions) (*expertReader, error) {
	par := o.par
	r := &expertReader{dir: dir, set: set, par: par, pool: make(chan []byte, 2*par), free: make(chan *expert, 4*par), direct: o.direct,
		check: o.check, async: o.async, verified: newVerified(len(set.Layers), c.NumExperts)}
	for i, name := range format.ExpertProjections {
		p, err := set.Projection(name)
		if err != nil {
			return nil, fmt.Errorf("model: expert set %s: %w", set.Dir, err)
		}
		r.proj[i] = p
	}
	if len(set.Layers) != c.NumHiddenLayers {
		return nil, fmt.Errorf("model: expert set %s has %d layers, config %d", set.Dir, len(set.Layers), c.NumHiddenLayers)
	}
	if o.lz4 {
		if err := r.openLZ4(dir); err != nil {
			r.Close()
			return nil, err
		}
	} else {
		for _, l := range set.Layers {
			f, err := openExpertFile(filepath.Join(dir, set.Dir, l.File), o.direct)
			if err != nil {
				r.Close()
				return nil, err
			}
			r.files = append(r.files, f)
		}
		r.probe = len(set.Layers) > 0 && canProbe(filepath.Join(dir, set.Dir, set.Layers[0].File))
	}
	if o.host != nil {
		if err := r.hostAlloc(o.host); err != nil {
			// Ordinary memory still works, only Bind is slower: not worth
			// failing Open or alarming the user over.
			slog.Debug("model: expert buffers from Go memory", "err", err)
		}
	}
	for len(r.pool) < 2*par {
		r.pool <- nil // allocated on first use
	}
	if o.hostTier > 0 {
		t, err := newHostTier(o.hostTier, int(set.Stride), o.host)
		if err != nil {
			r.Close()
			return nil, err
		}
		r.tier = t
	}
	r.startReaders()
	return r, nil
}

// startReaders starts the par readers for the life of r: a stream hands
// them jobs instead of starting goroutines and channels per layer.
func (r *expertReader) startReaders() {
	r.work = make(chan readJob)
	r.done = make(chan *expert, 2*r.par)
	for range r.par {
		r.workers.Add(1)
		go func() {
			defer r.workers.Done()
			for j := range r.work {
				e := r.readTier(j.l, j.id, j.timed, j.stay)
				if e == nil {
					e = r.read(j.l, j.id, <-r.pool, j.timed)
				}
				r.done <- e
			}
		}()
	}
}

// hostAlloc fills the pool with 2·par buffers from the backend, aligned to
// format.ExpertAlign. On failure it frees what it got and leaves the pool
// empty.
func (r *expertReader) hostAlloc(h backend.HostAllocator) error {
	const a = format.ExpertAlign
	n := int(r.set.Stride)
	r.host = h
	var bufs [][]byte
	for i := 0; i < 2*r.par; i++ {
		b, err := h.HostAlloc(n)
		if err == nil && len(b) >= n && aligned(b) {
			r.hostBufs = append(r.hostBufs, b)
			bufs = append(bufs, b[:n:n])
			continue
		}
		if err == nil {
			// Not page-aligned (no backend does this today, but the
			// interface does not promise it): over-allocate and align.
			if err = h.HostFree(b); err == nil {
				b, err = h.HostAlloc(n + a)
			}
		}
		if err == nil && len(b) < n+a {
			err = fmt.Errorf("HostAlloc(%d) returned %d bytes", n+a, len(b))
		}
		if err != nil {
			return errors.Join(err, r.freeHost())
		}
		r.hostBufs = append(r.hostBufs, b)
		off := int(-uintptr(unsafe.Pointer(&b[0])) & (a - 1))
		bufs = append(bufs, b[off:off+n:off+n])
	}
	for _, b := range bufs {
		r.pool <- b
	}
	return nil
}

func aligned(b []byte) bool {
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))&(format.ExpertAlign-1) == 0
}

// freeHost returns the backend's buffers. The pool must hold them all
// (no stream running).
func (r *expertReader) freeHost() error {
	var errs []error
	for _, b := range r.hostBufs {
		errs = append(errs, r.host.HostFree(b))
	}
	r.hostBufs, r.host = nil, nil
	return errors.Join(errs...)
}

func (r *expertReader) Close() error {
	var errs []error
	for _, f := range r.files {
		errs = append(errs, f.Close())
	}
	for _, f := range r.lz4 {
		errs = append(errs, f.Close())
	}
	r.stopDemoter()
	if r.work != nil {
		close(r.work)
		r.workers.Wait()
		r.work = nil
	}
	r.files, r.lz4 = nil, nil
	if r.tier != nil {
		errs = append(errs, r.tier.close())
		r.tier = nil
	}
	if r.host != nil {
		errs = append(errs, r.freeHost())
	}
	return errors.Join(errs...)
}

// alignedBuf returns n bytes starting at a multiple of format.ExpertAlign,
// the alignment direct I/O and DMA engines want.
func alignedBuf(n int) []byte {
	const a = format.ExpertAlign
	b := make([]byte, n+a)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (a - 1))
	if off != 0 {
		off = a - off
	}
	return b[off : off+n : off+n]
}

// expert is one routed expert read into a host buffer.
type expert struct {
	id  int
	buf []byte
	w   [3]backend.Weight
	err error

	// tier is the host-tier entry buf belongs to (nil: a pool buffer);
	// hostHit says the tier held the expert, so nothing was read.
	tier    *hentry
	hostHit bool
	stay    bool // a host-tier hit that stays there (readTier)

	// sum, when the read hashed the block, returns its CRC32C (waiting
	// for the hashing to end); pending: its check is left to run beside
	// the compute (async), and finish starts it.
	sum     func() uint32
	pending bool

	// Filled only for a timed stream (Timing).
	n               int64         // bytes read
	dur             time.Duration // pread latency
	pages, resident int           // pages probed for residency before the read, and how many were resident
}

// stream reads experts ids of layer l with r.par concurrent preads and
// calls fn for each as it arrives (in completion order), so compute on one
// expert overlaps the reads of the next. fn's weights are valid only during
// the call. The first error (read or fn) stops the stream and is returned;
// stream awaits the checksums of its reads (a damaged block's error comes
// after fn saw it when checks run beside the compute).
func (r *expertReader) stream(l int, ids []int, fn func(id int, w *[3]backend.Weight) error) error {
	err := r.streamTimed(l, ids, nil, fn)
	if _, cerr := r.awaitChecks(); cerr != nil {
		return cerr
	}
	return err
}

// streamTimed is stream that, when tp is not nil, adds each read's bytes,
// latency and page-cache residency to tp, and that leaves the checksums
// still running to the caller's awaitChecks (Model.settleChecks).
func (r *expertReader) streamTimed(l int, ids []int, tp *PhaseTiming, fn func(id int, w *[3]backend.Weight) error) error {
	return r.streamStay(l, ids, nil, tp, fn, nil)
}

// streamStay is streamTimed whose experts id with stay(id) (nil: none)
// stay in the host tier with exclusive tiers, or are read into it: a miss
// rank computes them where they lie, and the GPU tier does not take them.
//
// With late set, each expert's bytes stay the caller's until the next
// call of fn has returned, and, for the last one, until late has: fn may
// leave its binds in use (a device's copy from pinned memory still
// running) and let them go in its next call, so that the next expert's
// copy is queued before the host waits for this one's (a device's copy
// queue never runs dry between experts). late lets the last one go.
func (r *expertReader) streamStay(l int, ids []int, stay func(id int) bool, tp *PhaseTiming, fn func(id int, w *[3]backend.Weight) error, late func()) error {
	if n := len(r.files) + len(r.lz4); l < 0 || l >= n {
		return fmt.Errorf("model: expert layer %d of %d", l, n)
	}
	// Hand out the jobs while taking the reads as they arrive; after the
	// first error no more go out, and the reads already out are taken (so
	// that their buffers return before the next stream) but not computed.
	var first error
	var held *expert
	take := func(e *expert) {
		first = r.take(e, tp, fn, first)
		if late == nil {
			r.finish(e, l)
			return
		}
		if held != nil {
			r.finish(held, l)
		}
		held = e
	}
	sent, got := 0, 0
	for got < sent || (sent < len(ids) && first == nil) {
		if sent < len(ids) && first == nil {
			select {
			case r.work <- readJob{l: l, id: ids[sent], timed: tp != nil, stay: stay != nil && stay(ids[sent])}:
				sent++
				continue
			case e := <-r.done:
				take(e)
			}
		} else {
			take(<-r.done)
		}
		got++
	}
	if held != nil {
		late()
		r.finish(held, l)
	}
	return first
}

// take counts a stream's read e and passes it to fn unless the stream has
// failed (first); it returns the stream's first error. The caller
// finishes e.
func (r *expertReader) take(e *expert, tp *PhaseTiming, fn func(id int, w *[3]backend.Weight) error, first error) error {
	if e.hostHit && e.err == nil {
		r.hostHits++
	}
	if tp != nil && e.err == nil {
		if e.hostHit {
			tp.HostHits++
		} else {
			tp.read(e)
		}
	}
	if first == nil {
		if first = e.err; first == nil {
			first = fn(e.id, &e.w)
		}
	}
	return first
}

func (r *expertReader) read(l, id int, buf []byte, timed bool) *expert {
	e := r.newExpert(id)
	stride := r.set.Stride
	if buf == nil {
		buf = alignedBuf(int(stride))
	}
	e.buf = buf
	ne := len(r.set.Layers[l].CRC32C)
	if id < 0 || id >= ne {
		e.err = layerError(l, fmt.Errorf("model: layer %d expert %d out of range [0, %d)", l, id, ne))
		return e
	}
	if r.lz4 != nil {
		return r.readLZ4(e, l, timed)
	}
	var t0 time.Time
	if timed {
		if !r.direct && r.probe {
			e.resident, e.pages = residentPages(r.files[l], int64(id)*stride, stride)
		}
		t0 = time.Now()
	}
	check := r.needsCheck(l, id)
	sum, err := readSplit(r.files[l], buf, int64(id)*stride, check)
	if err != nil {
		e.err = fmt.Errorf("model: read layer %d expert %d: %w", l, id, err)
		if r.direct && errors.Is(err, syscall.EINVAL) {
			e.err = fmt.Errorf("%w (direct I/O needs block-aligned reads the filesystem accepts)", e.err)
		}
		return e
	}
	if timed {
		e.dur, e.n = time.Since(t0), stride
	}
	e.sum = sum
	switch {
	case check && r.async:
		e.pending = true
	case check:
		if r.verify(e, l); e.err != nil {
			return e
		}
	}
	r.describe(e, l)
	return e
}

// readTier serves expert (l, id) through the host tier: from its buffer
// on a hit, else read into the buffer it evicts. nil means no tier, or
// none of its buffers is free of use (the caller reads into the pool).
// stay keeps it in the tier with exclusive tiers as without (a miss
// rank's expert).
func (r *expertReader) readTier(l, id int, timed, stay bool) *expert {
	if r.tier == nil || r.lz4 != nil {
		return nil
	}
	var te *hentry
	var buf []byte
	var hit bool
	if r.tier.exclusive && !stay {
		// A miss is read into an ordinary buffer: the GPU tier takes it.
		te, buf, hit = r.tier.lookup(l, id)
	} else {
		te, buf, hit = r.tier.get(l, id)
	}
	if te == nil {
		return nil
	}
	if hit {
		e := r.newExpert(id)
		e.buf, e.tier, e.hostHit, e.stay = buf, te, true, stay
		r.describe(e, l)
		return e
	}
	e := r.read(l, id, buf, timed)
	e.tier = te
	return e
}

// finish ends the stream's use of e. Its buffer goes back now, or, with
// its check pending, once a goroutine of its own has checked it (while the
// caller computes), which awaitChecks then waits for.
func (r *expertReader) finish(e *expert, l int) {
	if !e.pending || e.err != nil {
		r.giveBack(e)
		r.recycle(e)
		return
	}
	p := &pendingCheck{l: l, id: e.id, done: make(chan struct{})}
	r.pending = append(r.pending, p)
	go func() {
		r.verify(e, l)
		p.err = e.err
		r.giveBack(e) // the host tier keeps the block only if it passed
		close(p.done)
		r.recycle(e)
	}()
}

// newExpert is a cleared record for a read of expert id: a finished one
// when there is one (a decode step reads K per layer).
func (r *expertReader) newExpert(id int) *expert {
	select {
	case e := <-r.free:
		*e = expert{id: id}
		return e
	default:
		return &expert{id: id}
	}
}

// recycle keeps e, finished and given back, for a later read.
func (r *expertReader) recycle(e *expert) {
	*e = expert{}
	select {
	case r.free <- e:
	default:
	}
}

// giveBack returns e's buffer: to the pool, or, unpinned, to the host
// tier (which keeps it when the read succeeded).
func (r *expertReader) giveBack(e *expert) {
	if e.tier != nil {
		r.tier.put(e.tier, e.err == nil)
		if r.tier.exclusive && e.hostHit && !e.stay {
			r.tier.drop(e.tier) // the GPU tier has taken it
		}
		return
	}
	r.pool <- e.buf
}

// describe points e's weights into its buffer.
func (r *expertReader) describe(e *expert, l int) {
	if err := r.weightsOver(e.buf, &e.w); err != nil {
		e.err = layerError(l, fmt.Errorf("model: layer %d expert %d: %w", l, e.id, err))
	}
}

// weightsOver points w, an expert's projections, into its block buf.
func (r *expertReader) weightsOver(buf []byte, w *[3]backend.Weight) error {
	for i, p := range r.proj {
		var err error
		if w[i], err = weight(p, buf); err != nil {
			return err
		}
	}
	return nil
}

// readSplit reads len(buf) bytes at off as up to readParts concurrent
// preads of whole 64 KiB pieces. One pread copies from the page cache at a
// single core's memcpy speed (about 7 MB in 1 ms on the GPU machine), which
// made a GPU-tier miss cost 5x its host-to-device copy; split, the copy
// runs on several cores, and a disk sees a deeper queue.
//
// With hash, each pread's goroutine goes on to checksum its own part, and
// sum returns the block's CRC32C, combined from the parts' once they are
// done: readSplit returns when the bytes are in, not when they are hashed,
// so the caller can use them while the hashing runs.
func readSplit(f *os.File, buf []byte, off int64, hash bool) (sum func() uint32, err error) {
	const piece = 64 << 10
	part := (len(buf)/readParts + piece - 1) &^ (piece - 1)
	if part <= 0 || len(buf) <= piece {
		if _, err := f.ReadAt(buf, off); err != nil || !hash {
			return nil, err
		}
		return func() uint32 { return format.CRC32C(buf) }, nil
	}
	var read, hashed sync.WaitGroup
	np := (len(buf) + part - 1) / part // readParts, or one more when rounding leaves a tail
	errs := make([]error, np)
	crcs := make([]uint32, np)
	for i := range np {
		b := buf[i*part : min((i+1)*part, len(buf))]
		read.Add(1)
		hashed.Add(1)
		go func() {
			defer hashed.Done()
			_, err := f.ReadAt(b, off+int64(i*part))
			errs[i] = err
			read.Done()
			if err == nil && hash {
				crcs[i] = format.CRC32C(b) // each part's own, combined by sum
			}
		}()
	}
	read.Wait()
	if err := errors.Join(errs...); err != nil {
		hashed.Wait() // parts still hashing read buf, which goes back to its pool
		return nil, err
	}
	if !hash {
		return nil, nil
	}
	return func() uint32 {
		hashed.Wait()
		c := crcs[0]
		for i := 1; i < np; i++ {
			c = crc32cCombine(c, crcs[i], int64(min((i+1)*part, len(buf))-i*part))
		}
		return c
	}, nil
}

// readParts is how many preads readSplit issues for one expert (a
// variable so that BenchmarkTieredDecode can measure what it saves).
var readParts = 4

// layerErr marks an error that already names its layer, so that the forward
// pass does not prefix the layer a second time.
type layerErr struct {
	layer int
	err   error
}

func layerError(l int, err error) error { return &layerErr{layer: l, err: err} }
func (e *layerErr) Error() string       { return e.err.Error() }
func (e *layerErr) Unwrap() error       { return e.err }

// inLayer wraps err with its layer unless it names that layer already.
func inLayer(l int, err error) error {
	if le, ok := errors.AsType[*layerErr](err); ok && le.layer == l {
		return err
	}
	return fmt.Errorf("model: layer %d: %w", l, err)
}
