package hub

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"

	"github.com/fmoe/fmoe/internal/progress"
)

// A Stream downloads a checkpoint's shards for a pack that consumes them as they arrive
// (fmoe-pack convert --stream, docs/hub.md): the small files and every shard's safetensors
// header first, so the pack can lay out its output and say how much disk it needs before any
// shard is fetched; then the shards, in name order, a few at a time, each handed over once it
// is verified; a shard the pack has finished with is deleted. Shards already in the cache are
// used and kept. A stream that fails leaves no shard it downloaded.
type Stream struct {
	c       *Client
	ref     Ref // pinned to the commit
	t       *cacheTarget
	shards  []*FileInfo
	info    []StreamShard
	workers int
	log     io.Writer
	bar     io.Writer

	mu      sync.Mutex
	fetched map[string]*FileInfo // downloaded by this stream and not yet released
	fresh   map[string]bool      // shards with no partial file before this stream
	got     atomic.Int64
}

// StreamShard is a shard known before it is downloaded.
type StreamShard struct {
	Name   string
	Size   int64
	Header []byte // the 8-byte length and the JSON header
	Kept   bool   // already complete in the cache: not downloaded, not deleted
}

// maxStreamHeader bounds a shard's JSON header (as the packer does).
const maxStreamHeader = 100 << 20

// OpenStream fetches ref's small files into the cache and every shard's header (by HTTP
// Range, or from the cache), ready for Run.
func (c *Client) OpenStream(ctx context.Context, ref Ref, o Options) (*Stream, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Dir != "" {
		return nil, errors.New("a streamed download goes through the Hugging Face cache; --dir is not supported with it")
	}
	if c.s.Offline {
		return nil, fmt.Errorf("%w: HF_HUB_OFFLINE is set: a streamed convert downloads; convert from the cache without --stream", ErrNotCached)
	}
	info, err := c.safeInfo(ctx, ref)
	if err != nil {
		return nil, err
	}
	pinned := Ref{Repo: ref.Repo, Revision: info.Commit}
	t := newCacheTarget(c.s.CacheDir, ref.Repo, info.Commit)
	meta, index, single, err := packMeta(ref, info.Files)
	if err != nil {
		return nil, err
	}
	p := &puller{c: c, ref: pinned, t: t, log: o.Log, workers: o.Workers}
	if err := p.run(ctx, meta, nil); err != nil {
		return nil, err
	}
	shards := []*FileInfo{single}
	if index != nil {
		if shards, err = shardFiles(ref, t.path(IndexFile), info.Files); err != nil {
			return nil, err
		}
	}
	s := &Stream{c: c, ref: pinned, t: t, shards: shards, workers: o.Workers, log: o.Log, bar: o.Progress,
		fetched: map[string]*FileInfo{}, fresh: map[string]bool{}}
	var toFetch, kept int64
	s.info = make([]StreamShard, len(shards))
	for i, f := range shards {
		done, err := t.done(f)
		if err != nil {
			return nil, err
		}
		s.info[i] = StreamShard{Name: f.Path, Size: f.Size, Kept: done}
		if done {
			kept += f.Size
			continue
		}
		toFetch += f.Size
		if _, serr := os.Stat(t.partial(f)); serr != nil {
			s.fresh[f.Path] = true
		}
	}
	if err := s.readHeaders(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "streaming %s (commit %s): %d shards, %s to download, %s already in %s\n",
		ref, info.Commit[:12], len(shards), gb(toFetch), gb(kept), c.s.CacheDir)
	return s, nil
}

// readHeaders reads every shard's header, from the cache for kept shards and by Range
// requests for the others, several at once (each is two round trips through a redirect).
func (s *Stream) readHeaders(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(s.shards))
	sem := make(chan struct{}, max(s.workers, 8))
	var wg sync.WaitGroup
	for i, f := range s.shards {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var err error
			if s.info[i].Kept {
				s.info[i].Header, err = fileHeader(s.t.path(f.Path), f)
			} else {
				s.info[i].Header, err = s.c.fetchHeader(ctx, s.ref, f)
			}
			if err != nil {
				errs[i] = err
				cancel()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.Join(errs...)
}

// Dir is the snapshot folder holding the small files, and each shard while it is needed.
func (s *Stream) Dir() string { return s.t.dir() }

// CacheDir is the cache the shards are downloaded into.
func (s *Stream) CacheDir() string { return s.c.s.CacheDir }

// Shards lists the shards in the order Run delivers them (name order, as the pack reads them).
func (s *Stream) Shards() []StreamShard { return s.info }

// Lookahead is how many shards may be on their way at once (one of them being delivered).
func (s *Stream) Lookahead() int { return s.workers }

// Fetched is the bytes this stream received.
func (s *Stream) Fetched() int64 { return s.got.Load() }

// Run downloads the shards, up to Lookahead at once, and calls arrived for each in order once
// it is verified; a shard starts downloading only when the one Lookahead places before it has
// been handed over, so at most Lookahead-1 wait beside the one being packed. On failure (a
// download, arrived, or ctx) every shard this stream downloaded and not released is deleted.
func (s *Stream) Run(ctx context.Context, arrived func(name, path string) error) (err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	results := make([]chan error, len(s.shards))
	for i := range results {
		results[i] = make(chan error, 1)
	}
	var total int64
	for i, f := range s.shards {
		if !s.info[i].Kept {
			total += f.Size
		}
	}
	bar := progress.New(s.bar, total, "downloading "+s.ref.Repo)
	slots := make(chan struct{}, s.workers)
	var wg sync.WaitGroup
	launched := make(chan struct{})
	go func() {
		defer close(launched)
		for i, f := range s.shards {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			if s.info[i].Kept {
				results[i] <- nil
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.c.fetch(ctx, &fetchJob{ref: s.ref, file: f, target: s.t, log: s.log,
					report: func(n int64) { s.got.Add(n); bar.Add(n) }})
				if err == nil {
					s.mu.Lock()
					s.fetched[f.Path] = f
					s.mu.Unlock()
				}
				results[i] <- err
			}()
		}
	}()
	defer func() {
		cancel(err)
		<-launched
		wg.Wait()
		if err != nil {
			s.discard()
		} else {
			bar.Finish()
		}
	}()
	for i, f := range s.shards {
		select {
		case err = <-results[i]:
		case <-ctx.Done():
			err = context.Cause(ctx)
		}
		if err != nil {
			return err
		}
		if err = arrived(f.Path, s.t.path(f.Path)); err != nil {
			return err
		}
		<-slots
	}
	return nil
}

// Release deletes a shard this stream downloaded (its snapshot link and its blob); a shard
// that was in the cache before stays.
func (s *Stream) Release(name string) error {
	s.mu.Lock()
	f := s.fetched[name]
	delete(s.fetched, name)
	s.mu.Unlock()
	if f == nil {
		return nil
	}
	return s.remove(f)
}

func (s *Stream) remove(f *FileInfo) error {
	unlock, err := lockFile(s.t.lockPath(f))
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Remove(s.t.path(f.Path)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Remove(s.t.blob(f)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// discard deletes what a failed stream downloaded: complete shards not yet released, and the
// partial files it started (partial files an earlier pull left are kept for it).
func (s *Stream) discard() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, f := range s.fetched {
		if err := s.remove(f); err != nil {
			fmt.Fprintf(s.log, "warning: could not delete %s: %v\n", s.t.path(name), err)
		}
		delete(s.fetched, name)
	}
	for _, f := range s.shards {
		if s.fresh[f.Path] {
			os.Remove(s.t.partial(f))
		}
	}
}

// fetchHeader reads a shard's safetensors header with two Range requests: the 8-byte length,
// then the JSON.
func (c *Client) fetchHeader(ctx context.Context, ref Ref, f *FileInfo) ([]byte, error) {
	first, err := c.fetchRange(ctx, ref, f, 0, 8)
	if err != nil {
		return nil, err
	}
	n, err := headerLen(first, f)
	if err != nil {
		return nil, err
	}
	rest, err := c.fetchRange(ctx, ref, f, 8, n)
	if err != nil {
		return nil, err
	}
	return append(first, rest...), nil
}

func headerLen(first []byte, f *FileInfo) (int64, error) {
	if f.Size < 8 || len(first) < 8 {
		return 0, fmt.Errorf("%s: %d bytes is too short for a safetensors file", f.Path, f.Size)
	}
	n := binary.LittleEndian.Uint64(first)
	if n > maxStreamHeader || int64(n) > f.Size-8 {
		return 0, fmt.Errorf("%s: corrupt safetensors header: header length %d in a %d-byte file", f.Path, n, f.Size)
	}
	return int64(n), nil
}

// fileHeader reads the header of a shard already on disk.
func fileHeader(p string, f *FileInfo) ([]byte, error) {
	fh, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	first := make([]byte, 8)
	if _, err := io.ReadFull(fh, first); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	n, err := headerLen(first, f)
	if err != nil {
		return nil, err
	}
	head := make([]byte, 8+n)
	copy(head, first)
	if _, err := io.ReadFull(fh, head[8:]); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return head, nil
}

// fetchRange GETs n bytes of f from offset off, following redirects as a download does, and
// checks the Hub's headers against its file list. A server that ignores the Range (200) is
// read up to what was asked.
func (c *Client) fetchRange(ctx context.Context, ref Ref, f *FileInfo, off, n int64) ([]byte, error) {
	u := fmt.Sprintf("%s/%s/resolve/%s/%s", c.s.Endpoint, ref.Repo, url.PathEscape(ref.Revision), escapePath(f.Path))
	hdr := http.Header{}
	hdr.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	var lastErr error
	for attempt := range maxResumes + 1 {
		if attempt > 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		resp, first, err := c.followRedirects(ctx, u, hdr)
		if err != nil {
			lastErr = fmt.Errorf("reading the header of %s of %s: %w", f.Path, ref.Repo, err)
			continue
		}
		data, err := readRange(resp, first, &fetchJob{ref: ref, file: f}, c, off, n)
		resp.Body.Close()
		if err == nil {
			return data, nil
		}
		var he *hubError
		if errors.As(err, &he) {
			return nil, err
		}
		lastErr = err
	}
	return nil, lastErr
}

func readRange(resp *http.Response, first http.Header, j *fetchJob, c *Client, off, n int64) ([]byte, error) {
	if err := checkHeaders(first, j); err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		var start int64 = -1
		fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-", &start)
		if start != off {
			return nil, fmt.Errorf("%s: asked for bytes from %d, the server sent Content-Range %q", j.file.Path, off, resp.Header.Get("Content-Range"))
		}
	case http.StatusOK:
		if _, err := io.CopyN(io.Discard, resp.Body, off); err != nil {
			return nil, fmt.Errorf("reading the header of %s: %w", j.file.Path, err)
		}
	default:
		if resp.StatusCode >= 500 {
			return nil, fmt.Errorf("reading the header of %s: the server answered %s", j.file.Path, resp.Status)
		}
		return nil, c.responseError(resp, j.ref, j.file.Path)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(resp.Body, data); err != nil {
		return nil, fmt.Errorf("reading the header of %s: %w", j.file.Path, err)
	}
	return data, nil
}
