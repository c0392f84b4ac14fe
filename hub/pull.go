package hub

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fmoe/fmoe/internal/progress"
)

// Options control Pull.
type Options struct {
	// Dir, when set, receives plain files (huggingface_hub's --local-dir layout) instead of
	// the shared cache.
	Dir      string
	Workers  int       // files fetched at once; 0 means 8
	Progress io.Writer // the byte progress bar; nil is silent
	Log      io.Writer // notes for the user; nil discards
}

// Result says what Pull did.
type Result struct {
	Dir           string // the folder holding the files: snapshots/COMMIT in the cache, or Dir
	Commit        string
	Files         []string
	Fetched       int64 // bytes received this run
	AlreadyHad    int64 // bytes found complete (or partial) before it
	FromCacheOnly bool
}

// Pull brings the files fmoe-pack convert needs of ref (config, tokenizer, template, index,
// shards) into the cache or o.Dir and returns the folder holding them. Offline (HF_HUB_OFFLINE)
// it only looks in the cache.
func (c *Client) Pull(ctx context.Context, ref Ref, o Options) (*Result, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if c.s.Offline {
		return c.pullOffline(ref, o)
	}
	info, err := c.safeInfo(ctx, ref)
	if err != nil {
		return nil, err
	}
	pinned := Ref{Repo: ref.Repo, Revision: info.Commit}
	t := c.newTarget(ref.Repo, info.Commit, o.Dir)
	meta, index, single, err := packMeta(ref, info.Files)
	if err != nil {
		return nil, err
	}
	files := meta
	if single != nil {
		files = append(files, single)
	}
	// The index is small and says which shards there are: fetch it (and the other small
	// files) first, quietly.
	p := &puller{c: c, ref: pinned, t: t, log: o.Log, workers: o.Workers}
	if err := p.run(ctx, meta, nil); err != nil {
		return nil, err
	}
	if index != nil {
		shards, err := shardFiles(ref, t.path(IndexFile), info.Files)
		if err != nil {
			return nil, err
		}
		files = append(files, shards...)
	}
	res := &Result{Dir: t.dir(), Commit: info.Commit}
	todo, err := p.plan(files, res)
	if err != nil {
		return nil, err
	}
	res.AlreadyHad -= p.received.Load() // the small files just fetched were not already here
	need := res.remaining(todo)
	fmt.Fprintf(o.Log, "pulling %s (commit %s) into %s: %d files, %s to fetch, %s already here\n",
		ref, info.Commit[:12], t.dir(), len(files), gb(need), gb(res.AlreadyHad))
	if free := freeSpace(t.dir()); free >= 0 && free < need {
		return nil, fmt.Errorf("pulling %s needs %s free in %s, it has %s", ref, gb(need), t.dir(), gb(free))
	}
	bar := progress.New(o.Progress, need, "pulling "+ref.Repo)
	if err := p.run(ctx, todoFiles(todo), bar); err != nil {
		return nil, err
	}
	bar.Finish()
	if ct, ok := t.(*cacheTarget); ok {
		if err := ct.writeRef(ref.Revision); err != nil {
			return nil, err
		}
	}
	res.Fetched = p.received.Load()
	for _, f := range files {
		res.Files = append(res.Files, f.Path)
	}
	return res, nil
}

func (c *Client) newTarget(repo, commit, dir string) target {
	if dir != "" {
		return &dirTarget{root: dir, commit: commit, hash: hashFile}
	}
	return newCacheTarget(c.s.CacheDir, repo, commit)
}

// cleanRel is p if it is a clean relative slash path inside the repository, else "".
func cleanRel(p string) string {
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") {
		return ""
	}
	return p
}

// freeSpace is freeBytes, replaceable in tests.
var freeSpace = freeBytes

func gb(n int64) string { return fmt.Sprintf("%.2f GB", float64(n)/1e9) }

// remaining is the bytes still to fetch of todo (less what partial files already hold).
func (r *Result) remaining(todo []*fetchTodo) int64 {
	var n int64
	for _, t := range todo {
		n += t.file.Size - t.partial
	}
	return n
}

func todoFiles(todo []*fetchTodo) []*FileInfo {
	out := make([]*FileInfo, len(todo))
	for i, t := range todo {
		out[i] = t.file
	}
	return out
}

type fetchTodo struct {
	file    *FileInfo
	partial int64
}

// puller fetches files with a few workers.
type puller struct {
	c        *Client
	ref      Ref
	t        target
	log      io.Writer
	workers  int
	received atomic.Int64
}

// plan drops the files already complete and notes partial ones.
func (p *puller) plan(files []*FileInfo, res *Result) ([]*fetchTodo, error) {
	var todo []*fetchTodo
	for _, f := range files {
		ok, err := p.t.done(f)
		if err != nil {
			return nil, err
		}
		if ok {
			res.AlreadyHad += f.Size
			continue
		}
		var part int64
		if st, err := os.Stat(p.t.partial(f)); err == nil && st.Size() <= f.Size {
			part = st.Size()
		}
		res.AlreadyHad += part
		todo = append(todo, &fetchTodo{file: f, partial: part})
	}
	return todo, nil
}

// run fetches the files, the first error cancelling the rest.
func (p *puller) run(ctx context.Context, list []*FileInfo, bar *progress.Bar) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan *FileInfo)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(p.workers, max(len(list), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range jobs {
				err := p.c.fetch(ctx, &fetchJob{ref: p.ref, file: f, target: p.t, log: p.log,
					report: func(n int64) { p.received.Add(n); bar.Add(n) }})
				if err != nil {
					once.Do(func() { first = err; cancel(err) })
				}
			}
		}()
	}
	for _, f := range list {
		select {
		case jobs <- f:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if first != nil {
		return first
	}
	return context.Cause(ctx)
}

// pullOffline finds ref in the cache (or o.Dir) without the network: the commit from
// refs/REVISION, and every file a pack needs in snapshots/COMMIT.
func (c *Client) pullOffline(ref Ref, o Options) (*Result, error) {
	commit := ref.Revision
	if o.Dir == "" && !IsCommit(commit) {
		root := filepath.Join(c.s.CacheDir, RepoFolderName(ref.Repo))
		data, err := os.ReadFile(filepath.Join(root, "refs", filepath.FromSlash(ref.Revision)))
		if err != nil {
			return nil, fmt.Errorf("%w: HF_HUB_OFFLINE is set and %s is not in the cache %s (no refs/%s): run once without HF_HUB_OFFLINE to download it",
				ErrNotCached, ref, c.s.CacheDir, ref.Revision)
		}
		commit = strings.TrimSpace(string(data))
	}
	t := c.newTarget(ref.Repo, commit, o.Dir)
	names := []string{"config.json"}
	if _, err := os.Stat(t.path(IndexFile)); err == nil {
		shards, err := ShardNames(t.path(IndexFile))
		if err != nil {
			return nil, err
		}
		names = append(append(names, IndexFile), shards...)
	} else {
		names = append(names, SingleFile)
	}
	for _, n := range names {
		if _, err := os.Stat(t.path(n)); err != nil {
			return nil, fmt.Errorf("%w: HF_HUB_OFFLINE is set and %s of %s is not in %s: run once without HF_HUB_OFFLINE to finish the download",
				ErrNotCached, n, ref, t.dir())
		}
	}
	fmt.Fprintf(o.Log, "offline: using %s (commit %s) from %s\n", ref, commit, t.dir())
	return &Result{Dir: t.dir(), Commit: commit, Files: names, FromCacheOnly: true}, nil
}

// FreeBytes is the space left to an unprivileged user on the file system holding dir (or its
// nearest existing ancestor), or -1 when unknown.
func FreeBytes(dir string) int64 { return freeSpace(dir) }
