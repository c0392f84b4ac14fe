package pack

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fmoe/fmoe/hub"
	"github.com/fmoe/fmoe/hub/hubtest"
)

// hubSource is the command's adapter from hub.Stream to ShardSource.
type hubSource struct{ *hub.Stream }

func (h hubSource) Shards() []SourceShard {
	var out []SourceShard
	for _, s := range h.Stream.Shards() {
		out = append(out, SourceShard{Name: s.Name, Size: s.Size, Header: s.Header, Kept: s.Kept})
	}
	return out
}

// diskBytes is the size of every regular file under roots.
func diskBytes(roots ...string) int64 {
	var n int64
	for _, r := range roots {
		filepath.WalkDir(r, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					n += fi.Size()
				}
			}
			return nil
		})
	}
	return n
}

type streamRun struct {
	plan      *StreamPlan
	base      int64 // disk in use when the plan was made (the small files already fetched)
	peak      atomic.Int64
	cacheBase int64        // of base, the cache's share
	cachePeak atomic.Int64 // the most the cache held (the shard window)
	cache     string
	out       string
	srv       *hubtest.Server
	repo      *hubtest.Repo
	stream    *hub.Stream
	observe   func(n int) // called with the count of observations so far
	workers   int
	token     string
	downloads int64
}

// runStream converts repo from a loopback Hub with --stream, measuring the disk used under
// the cache and the output's folder after every step of the pack and every 200µs besides.
func (r *streamRun) run(t *testing.T, ctx context.Context) (*Stats, error) {
	t.Helper()
	c := hub.NewClient(hub.Settings{Endpoint: r.srv.URL(), CacheDir: r.cache, Token: r.token, TokenSource: "HF_TOKEN"})
	var log bytes.Buffer
	defer func() { t.Logf("log: %s", log.String()) }()
	s, err := c.OpenStream(ctx, hub.Ref{Repo: r.repo.ID, Revision: "main"}, hub.Options{Workers: r.workers, Log: &log})
	if err != nil {
		return nil, err
	}
	r.stream = s
	roots := []string{r.cache, filepath.Dir(r.out)}
	measure := func() {
		c := diskBytes(r.cache)
		if n := c + diskBytes(roots[1]); n > r.peak.Load() {
			r.peak.Store(n)
		}
		if c > r.cachePeak.Load() {
			r.cachePeak.Store(c)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	n := 0
	defer measure() // the finished pack, with its side files and manifest
	return ConvertStream(ctx, Options{Out: r.out, Workers: 2, Log: &log}, hubSource{s}, StreamOptions{
		Check: func(p *StreamPlan) error {
			r.plan, r.base, r.cacheBase = p, diskBytes(roots...), diskBytes(r.cache)
			r.peak.Store(r.base)
			r.cachePeak.Store(r.cacheBase)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(200 * time.Microsecond):
						measure()
					}
				}
			}()
			return nil
		},
		Observe: func() {
			measure()
			n++
			if r.observe != nil {
				r.observe(n)
			}
		},
	})
}

func newStreamRun(t *testing.T, id, dir string) *streamRun {
	repo, err := hubtest.RepoFromDir(id, dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := hubtest.New([]*hubtest.Repo{repo}, "hf_test")
	t.Cleanup(srv.Close)
	tmp := t.TempDir()
	return &streamRun{cache: filepath.Join(tmp, "cache"), out: filepath.Join(tmp, "out", "pack"), srv: srv, repo: repo, workers: 2}
}

// sameStreamedPack fails unless the two pack folders hold the same files, byte for byte.
func sameStreamedPack(t *testing.T, want, got string) {
	t.Helper()
	n := 0
	filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		a, _ := os.ReadFile(p)
		b, err := os.ReadFile(filepath.Join(got, rel))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between the streamed and the local pack (%v)", rel, err)
		}
		n++
		return nil
	})
	m := 0
	filepath.WalkDir(got, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			m++
		}
		return err
	})
	if n == 0 || n != m {
		t.Errorf("the local pack has %d files, the streamed one %d", n, m)
	}
}

// noShardsLeft fails if the cache holds any shard blob, partial file or snapshot link of repo,
// or a ref (a streamed snapshot is never complete).
func noShardsLeft(t *testing.T, cache string, repo *hubtest.Repo) {
	t.Helper()
	root := filepath.Join(cache, hub.RepoFolderName(repo.ID))
	for name, f := range repo.Files {
		if !f.LFS {
			continue
		}
		blob := filepath.Join(root, "blobs", hubtest.SHA256(f.Data))
		for _, p := range []string{blob, blob + ".incomplete", filepath.Join(root, "snapshots", repo.Commit, name)} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("left behind: %s", p)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, "refs", "main")); err == nil {
		t.Error("refs/main written for a snapshot whose shards were deleted")
	}
}

// noOutput fails if out or any staged folder beside it exists.
func noOutput(t *testing.T, out string) {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Dir(out))
	for _, e := range ents {
		t.Errorf("left beside --out: %s", e.Name())
	}
}

// TestConvertStream: a streamed convert from the Hub packs what Convert packs from the same
// folder, byte for byte; the disk it uses beyond what was there when it reported its plan
// stays under the plan's bound at every moment measured; and no shard is left in the cache.
func TestConvertStream(t *testing.T) {
	for _, tc := range []struct {
		name, dir string
		workers   int
	}{
		{"tiny-hf", "../testdata/tiny/hf", 2},
		{"tiny-hf-1", "../testdata/tiny/hf", 1},
		{"tiny-chat-mlx", "../models/fmoe-tiny-chat/mlx-4bit", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newStreamRun(t, "fmoe/"+tc.name, tc.dir)
			r.workers = tc.workers
			if _, err := r.run(t, context.Background()); err != nil {
				t.Fatal(err)
			}
			local := filepath.Join(t.TempDir(), "local")
			if _, err := Convert(context.Background(), Options{In: tc.dir, Out: local, Workers: 2}); err != nil {
				t.Fatal(err)
			}
			sameStreamedPack(t, local, r.out)
			noShardsLeft(t, r.cache, r.repo)
			p := r.plan
			used := r.peak.Load() - r.base
			packSize := diskBytes(local)
			shards := r.cachePeak.Load() - r.cacheBase
			t.Logf("%s, %d workers: %d shards, %d bytes to download; plan: pack <= %d (actual %d), spool %d, window %d bytes (%d shards, %d held); measured: shards at most %d, all at most %d of the bound %d",
				tc.name, tc.workers, p.Shards, p.DownloadBytes, p.PackBytes, packSize, p.SpoolBytes, p.WindowBytes, p.WindowShards, p.HeldBytes, shards, used, p.NeedBytes())
			if used > p.NeedBytes() {
				t.Errorf("peak disk use %d bytes is over the reported bound %d", used, p.NeedBytes())
			}
			if shards > p.WindowBytes {
				t.Errorf("peak shard bytes in the cache %d is over the reported window %d", shards, p.WindowBytes)
			}
			if packSize > p.PackBytes || p.PackBytes > packSize+packSize/4+256<<10 {
				t.Errorf("pack bound %d for a %d-byte pack: wrong or too loose", p.PackBytes, packSize)
			}
			if p.WindowBytes >= p.DownloadBytes && p.Shards > tc.workers+2 {
				t.Errorf("window %d of a %d-byte download: streaming saved nothing", p.WindowBytes, p.DownloadBytes)
			}
			if used < packSize || shards <= 0 {
				t.Errorf("measured %d bytes in all and %d of shards for a %d-byte pack: the measurement missed something", used, shards, packSize)
			}
		})
	}
}

// TestConvertStreamKeepsCachedShards: shards already in the cache are used and stay; only
// the others are downloaded and deleted.
func TestConvertStreamKeepsCachedShards(t *testing.T) {
	r := newStreamRun(t, "fmoe/tiny-chat", "../models/fmoe-tiny-chat/mlx-4bit")
	c := hub.NewClient(hub.Settings{Endpoint: r.srv.URL(), CacheDir: r.cache})
	res, err := c.Pull(context.Background(), hub.Ref{Repo: r.repo.ID, Revision: "main"}, hub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const gone = "model-00002-of-00003.safetensors"
	link := filepath.Join(res.Dir, gone)
	blob, _ := filepath.EvalSymlinks(link)
	os.Remove(link)
	os.Remove(blob)
	before := r.srv.Stats.TotalBodyBytes()
	if _, err := r.run(t, context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := r.srv.Stats.TotalBodyBytes()-before, int64(len(r.repo.Files[gone].Data)); r.stream.Fetched() != want || got > want+64<<10 {
		t.Errorf("fetched %d bytes (served %d, headers included), want the one missing shard's %d", r.stream.Fetched(), got, want)
	}
	for name, f := range r.repo.Files {
		_, err := os.Stat(filepath.Join(res.Dir, name))
		if f.LFS && name == gone && err == nil {
			t.Errorf("%s, downloaded by the stream, was kept", name)
		}
		if name != gone && err != nil {
			t.Errorf("%s, in the cache before, was deleted", name)
		}
	}
}

// TestConvertStreamInterrupted: a streamed convert cancelled half-way, or stopped by a
// connection that keeps dropping, leaves no output, no staged folder and no shard.
func TestConvertStreamInterrupted(t *testing.T) {
	r := newStreamRun(t, "fmoe/tiny-hf", "../testdata/tiny/hf")
	ctx, cancel := context.WithCancel(context.Background())
	r.observe = func(n int) {
		if n == 10 {
			cancel()
		}
	}
	_, err := r.run(t, ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled stream: %v", err)
	}
	noOutput(t, r.out)
	noShardsLeft(t, r.cache, r.repo)

	r = newStreamRun(t, "fmoe/tiny-hf", "../testdata/tiny/hf")
	const shard = "model-00012-of-00034.safetensors"
	r.srv.DropAt(shard, int64(len(r.repo.Files[shard].Data)/2))
	_, err = r.run(t, context.Background())
	if err == nil || !strings.Contains(err.Error(), shard) || !strings.Contains(err.Error(), "broke off") {
		t.Fatalf("dropped connection: %v", err)
	}
	noOutput(t, r.out)
	noShardsLeft(t, r.cache, r.repo)

	// A connection that breaks once half-way through a shard resumes with a Range request:
	// the pack is right and the shard's bytes were sent once, not twice.
	r = newStreamRun(t, "fmoe/tiny-hf", "../testdata/tiny/hf")
	r.srv.DropOnceAt(shard, int64(len(r.repo.Files[shard].Data)/2))
	if _, err := r.run(t, context.Background()); err != nil {
		t.Fatalf("one drop: %v", err)
	}
	data := r.repo.Files[shard].Data
	if got, want := r.srv.Stats.BodyBytes(shard), int64(len(data)+len(headerBytes(data))); got > want {
		t.Errorf("%s: %d bytes sent for a %d-byte shard and its header: the resume fetched again what it had", shard, got, want)
	}
	hfLocal := filepath.Join(t.TempDir(), "local")
	if _, err := Convert(context.Background(), Options{In: "../testdata/tiny/hf", Out: hfLocal}); err != nil {
		t.Fatal(err)
	}
	sameStreamedPack(t, hfLocal, r.out)
	noShardsLeft(t, r.cache, r.repo)

	// A byte corrupted in transit is caught by the sha256, fetched again, and the pack is right.
	r = newStreamRun(t, "fmoe/tiny-chat", "../models/fmoe-tiny-chat/mlx-4bit")
	r.srv.Corrupt("model-00002-of-00003.safetensors", 1)
	if _, err := r.run(t, context.Background()); err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(t.TempDir(), "local")
	if _, err := Convert(context.Background(), Options{In: "../models/fmoe-tiny-chat/mlx-4bit", Out: local}); err != nil {
		t.Fatal(err)
	}
	sameStreamedPack(t, local, r.out)

	// A mirror that ignores Range: the headers are cut from whole-file answers.
	r = newStreamRun(t, "fmoe/tiny-chat", "../models/fmoe-tiny-chat/mlx-4bit")
	for name := range r.repo.Files {
		r.srv.IgnoreRange(name, true)
	}
	if _, err := r.run(t, context.Background()); err != nil {
		t.Fatalf("Range ignored: %v", err)
	}
	sameStreamedPack(t, local, r.out)
	noShardsLeft(t, r.cache, r.repo)

	// Gated without a token: the Hub's refusal, before anything is written.
	r = newStreamRun(t, "fmoe/gated", "../models/fmoe-tiny-chat/mlx-4bit")
	r.repo.Gated, r.repo.Access = true, []string{"hf_test"}
	if _, err := r.run(t, context.Background()); !errors.Is(err, hub.ErrGated) || !strings.Contains(err.Error(), "HF_TOKEN=") {
		t.Errorf("gated without a token: %v", err)
	}
	noOutput(t, r.out)
}

// dirSource delivers a local checkpoint's shards as a download would: each copied into a
// scratch folder when its turn comes, deleted when released. With it every family the packer
// reads is streamed, without a Hub.
type dirSource struct {
	src, dir string
	shards   []SourceShard
	released map[string]bool
	// tamper, if set, changes a shard's bytes on the way (a source that lied in its header).
	tamper func(name string, data []byte)
}

func newDirSource(t *testing.T, src string) *dirSource {
	t.Helper()
	dir := t.TempDir()
	s := &dirSource{src: src, dir: dir, released: map[string]bool{}}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		p := filepath.Join(src, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(e.Name(), ".safetensors") {
			os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644)
			continue
		}
		head := headerBytes(data)
		if head == nil {
			t.Fatalf("%s: no safetensors header", p)
		}
		s.shards = append(s.shards, SourceShard{Name: e.Name(), Size: int64(len(data)), Header: head})
	}
	return s
}

func (s *dirSource) Dir() string           { return s.dir }
func (s *dirSource) Shards() []SourceShard { return s.shards }
func (s *dirSource) Lookahead() int        { return 1 }
func (s *dirSource) Release(name string) error {
	if s.released[name] {
		return errors.New("released twice: " + name)
	}
	s.released[name] = true
	return os.Remove(filepath.Join(s.dir, name))
}

func (s *dirSource) Run(ctx context.Context, arrived func(name, path string) error) error {
	for _, sh := range s.shards {
		data, err := os.ReadFile(filepath.Join(s.src, sh.Name))
		if err != nil {
			return err
		}
		if s.tamper != nil {
			s.tamper(sh.Name, data)
		}
		p := filepath.Join(s.dir, sh.Name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
		if err := arrived(sh.Name, p); err != nil {
			return err
		}
	}
	return nil
}

// TestConvertStreamFamilies: for every layout and family the packer reads, and for the bit
// options that change model_weights.bin, a streamed pack equals Convert's byte for byte, its
// size is within the plan's bound, and every shard is released.
func TestConvertStreamFamilies(t *testing.T) {
	fp8, _ := fp8Checkpoints(t, false)
	fp8vl, _ := fp8Checkpoints(t, true)
	for _, tc := range []struct {
		name, dir string
		o         Options
	}{
		{"hf", tiny + "hf", Options{}},
		{"hf bits 16", tiny + "hf", Options{Bits: 16}},
		{"hf dense 8", tiny + "hf", Options{DenseBits: 8}},
		{"hf-vl", tiny + "hf-vl", Options{}},
		{"mlx-4bit", tiny + "mlx-4bit", Options{}},
		{"fp8", fp8, Options{}},
		{"fp8 vl bits 16", fp8vl, Options{Bits: 16}},
		{"qwen3-next", qwen3NextOf(t, tiny+"hf"), Options{}},
		{"glm4_moe", glmFixture, Options{}},
		{"deepseek_v3", "../testdata/arch/deepseek_v3/hf", Options{}},
		{"qwen3_moe", "../testdata/arch/qwen3_moe/hf", Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			o := tc.o
			o.In, o.Out, o.Workers = tc.dir, filepath.Join(tmp, "local"), 2
			if _, err := Convert(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			src := newDirSource(t, tc.dir)
			o.Out = filepath.Join(tmp, "stream")
			var plan *StreamPlan
			_, err := ConvertStream(context.Background(), o, src, StreamOptions{Check: func(p *StreamPlan) error { plan = p; return nil }})
			if err != nil {
				t.Fatal(err)
			}
			sameStreamedPack(t, filepath.Join(tmp, "local"), o.Out)
			if size := diskBytes(o.Out); size > plan.PackBytes {
				t.Errorf("pack of %d bytes, over the plan's bound %d", size, plan.PackBytes)
			}
			if len(src.released) != len(src.shards) {
				t.Errorf("%d of %d shards released", len(src.released), len(src.shards))
			}
			t.Logf("%d shards, window %d of %d bytes (%d shards)", plan.Shards, plan.WindowBytes, plan.DownloadBytes, plan.WindowShards)
		})
	}
}

// TestConvertStreamRefuses: a shard whose header is not the one announced, and a tensor read
// before its shard arrived, stop the pack with an error instead of packing zeros.
func TestConvertStreamRefuses(t *testing.T) {
	src := newDirSource(t, tiny+"mlx-4bit")
	victim := src.shards[1].Name
	src.tamper = func(name string, data []byte) {
		if name == victim {
			data[9] ^= 1 // inside the JSON header
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	_, err := ConvertStream(context.Background(), Options{Out: out}, src, StreamOptions{})
	if err == nil || !strings.Contains(err.Error(), victim) || !strings.Contains(err.Error(), "header differs") {
		t.Errorf("tampered header: %v", err)
	}
	noOutput(t, out)

	// A tensor the config needs is missing: named before any shard is delivered.
	src = newDirSource(t, tiny+"hf")
	// Renamed in the index and the shard's header (same length: the offsets stand), as if the
	// checkpoint lacked it.
	const gone, renamed = "model.layers.1.mlp.experts.3.down_proj.weight", "model.layers.1.mlp.experts.3.down_prox.weight"
	idxPath := filepath.Join(src.dir, "model.safetensors.index.json")
	raw, _ := os.ReadFile(idxPath)
	os.WriteFile(idxPath, bytes.ReplaceAll(raw, []byte(gone), []byte(renamed)), 0o644)
	for i, sh := range src.shards {
		src.shards[i].Header = bytes.ReplaceAll(sh.Header, []byte(gone), []byte(renamed))
	}
	delivered := 0
	src.tamper = func(string, []byte) { delivered++ }
	_, err = ConvertStream(context.Background(), Options{Out: out}, src, StreamOptions{})
	if err == nil || !strings.Contains(err.Error(), "model.layers.1.mlp.experts.3.down_proj.weight is missing") || delivered != 0 {
		t.Errorf("missing expert tensor: %v (after %d shards)", err, delivered)
	}
	noOutput(t, out)

	p := &packer{}
	sh := &shard{name: "model-00002-of-00003.safetensors", standIn: true}
	err = p.checkArrived([]*srcTensor{{orig: "model.layers.0.mlp.gate.weight", shard: sh}})
	if err == nil || !strings.Contains(err.Error(), "before its shard model-00002-of-00003.safetensors arrived") {
		t.Errorf("read from a stand-in: %v", err)
	}
	sh.standIn = false
	if err := p.checkArrived([]*srcTensor{{orig: "x", shard: sh}}); err != nil {
		t.Errorf("read from an arrived shard: %v", err)
	}
}
