package hub

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fmoe/fmoe/hub/hubtest"
)

const (
	tinyHF   = "../testdata/tiny/hf"
	tinyChat = "../models/fmoe-tiny-chat/mlx-4bit"
	token    = "hf_testtoken"
)

// fixtureRepo serves a fixture folder as repository id.
func fixtureRepo(t *testing.T, id, dir string) *hubtest.Repo {
	t.Helper()
	r, err := hubtest.RepoFromDir(id, dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func startHub(t *testing.T, repos ...*hubtest.Repo) *hubtest.Server {
	t.Helper()
	s := hubtest.New(repos, token, "hf_other")
	t.Cleanup(s.Close)
	return s
}

func newTestClient(srv *hubtest.Server, cache, tok string) *Client {
	c := NewClient(Settings{Endpoint: srv.URL(), CacheDir: cache, Token: tok, TokenSource: "HF_TOKEN"})
	c.stall = 5 * time.Second
	return c
}

func pull(t *testing.T, c *Client, ref string, o Options) (*Result, error) {
	t.Helper()
	r, err := ParseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var log bytes.Buffer
	if o.Log == nil {
		o.Log = &log
	}
	res, err := c.Pull(ctx, r, o)
	t.Logf("pull %s: log %q", ref, log.String())
	return res, err
}

// sameFiles checks every file of src a pack needs is in dir, byte for byte, and that dir
// has nothing else at top level but what the pull named.
func sameFiles(t *testing.T, src, dir string, res *Result) {
	t.Helper()
	ents, _ := os.ReadDir(src)
	n := 0
	for _, e := range ents {
		want, _ := os.ReadFile(filepath.Join(src, e.Name()))
		got, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Errorf("%s not pulled: %v", e.Name(), err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the source", e.Name())
		}
		n++
	}
	if len(res.Files) != n {
		t.Errorf("pulled %d files %v, the fixture has %d", len(res.Files), res.Files, n)
	}
}

// noPartials fails if anything half-written is left under root.
func noPartials(t *testing.T, root string) {
	t.Helper()
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && (strings.HasSuffix(p, ".incomplete") || strings.HasSuffix(p, ".tmp")) {
			t.Errorf("left behind: %s", p)
		}
		return nil
	})
}

func TestPullIntoCache(t *testing.T) {
	repo := fixtureRepo(t, "fmoe/tiny-hf", tinyHF)
	srv := startHub(t, repo)
	cache := t.TempDir()
	c := newTestClient(srv, cache, token)
	res, err := pull(t, c, "hf://fmoe/tiny-hf", Options{Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(cache, "models--fmoe--tiny-hf")
	if res.Commit != repo.Commit || res.Dir != filepath.Join(root, "snapshots", repo.Commit) {
		t.Fatalf("result %+v, want commit %s in %s", res, repo.Commit, root)
	}
	sameFiles(t, tinyHF, res.Dir, res)
	ref, _ := os.ReadFile(filepath.Join(root, "refs", "main"))
	if string(ref) != repo.Commit {
		t.Errorf("refs/main = %q, want %s", ref, repo.Commit)
	}
	// huggingface_hub's layout: a relative link to blobs/ETAG (sha256 for LFS files).
	for name, f := range repo.Files {
		link, err := os.Readlink(filepath.Join(res.Dir, name))
		want := "../../blobs/" + hubtest.GitSHA1(f.Data)
		if f.LFS {
			want = "../../blobs/" + hubtest.SHA256(f.Data)
		}
		if err != nil || link != want {
			t.Errorf("%s links to %q (%v), want %q", name, link, err, want)
		}
	}
	var total int64
	for _, f := range repo.Files {
		total += int64(len(f.Data))
	}
	if got := srv.Stats.TotalBodyBytes(); got != total || res.Fetched != total {
		t.Errorf("served %d bytes, client counted %d; the files are %d", got, res.Fetched, total)
	}
	if n := srv.Stats.CDNAuthHeaders(); n != 0 {
		t.Errorf("the token went to the CDN %d times", n)
	}
	noPartials(t, cache)

	// A second pull finds everything in the cache and fetches nothing.
	res2, err := pull(t, c, "hf://fmoe/tiny-hf@main", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.Stats.TotalBodyBytes(); got != total || res2.Fetched != 0 || res2.AlreadyHad != total {
		t.Errorf("second pull: served %d more bytes, fetched %d, had %d", got-total, res2.Fetched, res2.AlreadyHad)
	}
	// By commit hash: no refs/ entry needed, same snapshot.
	res3, err := pull(t, c, "hf://fmoe/tiny-hf@"+repo.Commit, Options{})
	if err != nil || res3.Dir != res.Dir {
		t.Errorf("by commit: %v, dir %v", err, res3)
	}
}

func TestPullIntoDir(t *testing.T) {
	srv := startHub(t, fixtureRepo(t, "fmoe/tiny-chat", tinyChat))
	dir := filepath.Join(t.TempDir(), "model")
	c := newTestClient(srv, t.TempDir(), "")
	res, err := pull(t, c, "hf://fmoe/tiny-chat", Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if res.Dir != dir {
		t.Errorf("dir %s, want %s", res.Dir, dir)
	}
	sameFiles(t, tinyChat, dir, res)
	if st, err := os.Lstat(filepath.Join(dir, "config.json")); err != nil || !st.Mode().IsRegular() {
		t.Errorf("--dir files must be plain files: %v %v", st, err)
	}
	noPartials(t, dir)

	// A file of the user's own under a repository name is neither overwritten nor taken.
	own := []byte("my own notes")
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), own, 0o644)
	os.Remove(filepath.Join(dir, ".cache", "huggingface", "download", "tokenizer.json.metadata"))
	_, err = pull(t, c, "hf://fmoe/tiny-chat", Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "tokenizer.json exists and is not") {
		t.Errorf("pull over a different file: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "tokenizer.json")); !bytes.Equal(got, own) {
		t.Error("the user's file was overwritten")
	}
}

func TestPullResumesAfterDrop(t *testing.T) {
	repo := fixtureRepo(t, "fmoe/tiny-chat", tinyChat)
	srv := startHub(t, repo)
	cache := t.TempDir()
	c := newTestClient(srv, cache, "")
	const shard = "model-00001-of-00003.safetensors"
	size := int64(len(repo.Files[shard].Data))
	half := size / 2
	srv.DropAt(shard, half)
	_, err := pull(t, c, "hf://fmoe/tiny-chat", Options{})
	if err == nil || !strings.Contains(err.Error(), "broke off at") || !strings.Contains(err.Error(), shard) ||
		!strings.Contains(err.Error(), "run the command again") {
		t.Fatalf("dropped connection: %v", err)
	}
	root := filepath.Join(cache, "models--fmoe--tiny-chat")
	blob := filepath.Join(root, "blobs", hubtest.SHA256(repo.Files[shard].Data))
	if st, err := os.Stat(blob + ".incomplete"); err != nil || st.Size() != half {
		t.Fatalf("partial file: %v %v, want %d bytes", st, err, half)
	}
	if _, err := os.Stat(blob); err == nil {
		t.Error("a half-written blob has its final name")
	}
	if _, err := os.Stat(filepath.Join(root, "snapshots", repo.Commit, shard)); err == nil {
		t.Error("the snapshot links a file that is not complete")
	}
	if _, err := os.Stat(filepath.Join(root, "refs", "main")); err == nil {
		t.Error("refs/main written for an incomplete snapshot")
	}

	srv.DropAt(shard, -1)
	before := srv.Stats.BodyBytes(shard)
	res, err := pull(t, c, "hf://fmoe/tiny-chat", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.Stats.BodyBytes(shard) - before; got != size-half {
		t.Errorf("resume fetched %d bytes of %s, want the missing %d", got, shard, size-half)
	}
	sameFiles(t, tinyChat, res.Dir, res)
	noPartials(t, cache)
}

func TestPullChecksum(t *testing.T) {
	repo := fixtureRepo(t, "fmoe/tiny-chat", tinyChat)
	srv := startHub(t, repo)
	const shard = "model-00002-of-00003.safetensors"

	// Corrupted once: discarded and fetched again.
	srv.Corrupt(shard, 1)
	var log bytes.Buffer
	res, err := pull(t, newTestClient(srv, t.TempDir(), ""), "hf://fmoe/tiny-chat", Options{Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, tinyChat, res.Dir, res)
	if !strings.Contains(log.String(), "discarded, fetching it once more") {
		t.Errorf("log does not say the file was fetched again: %q", log.String())
	}

	// Corrupted twice: the run stops, naming the file, and keeps nothing of it.
	srv.Corrupt(shard, 2)
	cache := t.TempDir()
	_, err = pull(t, newTestClient(srv, cache, ""), "hf://fmoe/tiny-chat", Options{})
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), shard) || !strings.Contains(err.Error(), hubtest.SHA256(repo.Files[shard].Data)) {
		t.Fatalf("twice corrupted: %v", err)
	}
	root := filepath.Join(cache, "models--fmoe--tiny-chat")
	blob := filepath.Join(root, "blobs", hubtest.SHA256(repo.Files[shard].Data))
	for _, p := range []string{blob, blob + ".incomplete", filepath.Join(root, "snapshots", repo.Commit, shard)} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists after a checksum failure", p)
		}
	}

	// A small (git, not LFS) file is checked against its git blob id.
	srv.Corrupt("config.json", 2)
	_, err = pull(t, newTestClient(srv, t.TempDir(), ""), "hf://fmoe/tiny-chat", Options{})
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "config.json") || !strings.Contains(err.Error(), "git blob id") {
		t.Errorf("corrupted config.json: %v", err)
	}
}

func TestPullOffline(t *testing.T) {
	repo := fixtureRepo(t, "fmoe/tiny-hf", tinyHF)
	srv := startHub(t, repo)
	cache := t.TempDir()
	online, err := pull(t, newTestClient(srv, cache, ""), "hf://fmoe/tiny-hf", Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	requests := srv.Stats.Requests()
	off := newTestClient(srv, cache, "")
	off.s.Offline = true
	res, err := pull(t, off, "hf://fmoe/tiny-hf", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Dir != online.Dir || res.Commit != repo.Commit || !res.FromCacheOnly || srv.Stats.Requests() != requests {
		t.Errorf("offline: %+v (online %s)", res, online.Dir)
	}
	if _, err := pull(t, off, "hf://fmoe/tiny-hf@v2", Options{}); !errors.Is(err, ErrNotCached) || !strings.Contains(err.Error(), "HF_HUB_OFFLINE") {
		t.Errorf("offline, uncached revision: %v", err)
	}
	const shard = "model-00007-of-00034.safetensors"
	os.Remove(filepath.Join(res.Dir, shard))
	if _, err := pull(t, off, "hf://fmoe/tiny-hf", Options{}); !errors.Is(err, ErrNotCached) || !strings.Contains(err.Error(), shard) {
		t.Errorf("offline, missing shard: %v", err)
	}
}

func TestPullErrors(t *testing.T) {
	gated := fixtureRepo(t, "fmoe/gated", tinyChat)
	gated.Gated, gated.Access = true, []string{token}
	private := fixtureRepo(t, "fmoe/private", tinyChat)
	private.Private, private.Access = true, []string{token}
	broken := fixtureRepo(t, "fmoe/broken", tinyChat)
	delete(broken.Files, "model-00003-of-00003.safetensors")
	srv := startHub(t, gated, private, broken, fixtureRepo(t, "fmoe/tiny-chat", tinyChat))
	for _, tc := range []struct {
		ref, tok string
		is       error
		says     []string
	}{
		{"hf://fmoe/gated", "", ErrGated, []string{"fmoe/gated is a gated repository", "HF_TOKEN=", srv.URL() + "/fmoe/gated"}},
		{"hf://fmoe/gated", "hf_other", ErrGated, []string{"has no access", "request access"}},
		{"hf://fmoe/private", "", ErrRepoNotFound, []string{"fmoe/private not found", "if it is private", "HF_TOKEN="}},
		{"hf://fmoe/private", "hf_other", ErrRepoNotFound, []string{"fmoe/private not found", "cannot read it"}},
		{"hf://fmoe/nothing", token, ErrRepoNotFound, []string{"repository fmoe/nothing not found"}},
		{"hf://fmoe/tiny-chat@v9", "", ErrRevisionNotFound, []string{`revision "v9" not found in fmoe/tiny-chat`}},
		{"hf://fmoe/broken", "", ErrEntryNotFound, []string{"model-00003-of-00003.safetensors", "does not have"}},
		{"hf://fmoe/tiny-chat", "hf_expired", ErrUnauthorized, []string{"refused the token from HF_TOKEN"}},
	} {
		cache := t.TempDir()
		_, err := pull(t, newTestClient(srv, cache, tc.tok), tc.ref, Options{})
		if !errors.Is(err, tc.is) {
			t.Errorf("%s (token %q): %v, want %v", tc.ref, tc.tok, err, tc.is)
			continue
		}
		for _, s := range tc.says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s (token %q): %q does not say %q", tc.ref, tc.tok, err, s)
			}
		}
		noPartials(t, cache)
	}
	// With access the gated and private repositories pull.
	for _, ref := range []string{"hf://fmoe/gated", "hf://fmoe/private"} {
		if _, err := pull(t, newTestClient(srv, t.TempDir(), token), ref, Options{}); err != nil {
			t.Errorf("%s with access: %v", ref, err)
		}
	}
	// Nobody listening: the error names what was being done and where.
	srv.Close()
	_, err := pull(t, newTestClient(srv, t.TempDir(), ""), "hf://fmoe/tiny-chat", Options{})
	if err == nil || !strings.Contains(err.Error(), "listing fmoe/tiny-chat@main") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("no server: %v", err)
	}
}

func TestParseRef(t *testing.T) {
	for in, want := range map[string]Ref{
		"hf://Qwen/Qwen3.5-397B-A17B":   {"Qwen/Qwen3.5-397B-A17B", "main"},
		"hf://mlx-community/x_y.z@v1.0": {"mlx-community/x_y.z", "v1.0"},
		"hf://a/b@refs/pr/1":            {"a/b", "refs/pr/1"},
	} {
		got, err := ParseRef(in)
		if err != nil || got != want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"Qwen/x", "hf://Qwen", "hf://a/b/c", "hf://a/b@", "hf://a--b/c", "hf://a/../b", "hf://a/b@../x", "hf://-a/b"} {
		if _, err := ParseRef(bad); err == nil {
			t.Errorf("ParseRef(%q) accepted", bad)
		}
	}
}

// TestPullServerErrors: a 503 from the CDN is retried; one that persists stops the run
// saying what the server answered.
func TestPullServerErrors(t *testing.T) {
	srv := startHub(t, fixtureRepo(t, "fmoe/tiny-chat", tinyChat))
	const shard = "model-00002-of-00003.safetensors"
	srv.Fail(shard, http.StatusServiceUnavailable, 2)
	res, err := pull(t, newTestClient(srv, t.TempDir(), ""), "hf://fmoe/tiny-chat", Options{})
	if err != nil {
		t.Fatalf("two 503s then success: %v", err)
	}
	sameFiles(t, tinyChat, res.Dir, res)
	srv.Fail(shard, http.StatusServiceUnavailable, 100)
	_, err = pull(t, newTestClient(srv, t.TempDir(), ""), "hf://fmoe/tiny-chat", Options{})
	if err == nil || !strings.Contains(err.Error(), "503 Service Unavailable") || !strings.Contains(err.Error(), shard) {
		t.Errorf("persistent 503: %v", err)
	}
}

// TestPullRenamed: a renamed repository answers with relative redirects, which are followed
// (with the token: they stay on the Hub), and the file checks use the Hub's final headers.
func TestPullRenamed(t *testing.T) {
	srv := startHub(t, fixtureRepo(t, "fmoe/tiny-chat", tinyChat))
	srv.Rename("old-org/tiny", "fmoe/tiny-chat")
	res, err := pull(t, newTestClient(srv, t.TempDir(), token), "hf://old-org/tiny", Options{})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, tinyChat, res.Dir, res)
	if !strings.Contains(res.Dir, "models--old-org--tiny") {
		t.Errorf("cached under %s, want the name asked for (as huggingface_hub does)", res.Dir)
	}
}

// TestPullCancelled: an interrupted pull (Ctrl-C) keeps its partial file for the next run
// and names nothing complete.
func TestPullCancelled(t *testing.T) {
	repo := fixtureRepo(t, "fmoe/tiny-chat", tinyChat)
	srv := startHub(t, repo)
	cache := t.TempDir()
	const shard = "model-00001-of-00003.safetensors"
	srv.DropAt(shard, 1000) // holds the shard back while the context is cancelled
	ctx, cancel := context.WithCancel(context.Background())
	c := newTestClient(srv, cache, "")
	log := &syncWriter{w: &bytes.Buffer{}}
	go func() {
		for !log.contains("resuming") {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	_, err := c.Pull(ctx, Ref{Repo: "fmoe/tiny-chat", Revision: "main"}, Options{Log: log})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pull: %v", err)
	}
	blob := filepath.Join(cache, "models--fmoe--tiny-chat", "blobs", hubtest.SHA256(repo.Files[shard].Data))
	if st, err := os.Stat(blob + ".incomplete"); err != nil || st.Size() != 1000 {
		t.Errorf("partial file after cancel: %v %v", st, err)
	}
	if _, err := os.Stat(blob); err == nil {
		t.Error("a cancelled download has its final name")
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) contains(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Contains(s.w.String(), sub)
}

// TestPullNoRoom: a download that cannot fit stops before fetching any shard, saying how much
// it needs and how much there is.
func TestPullNoRoom(t *testing.T) {
	srv := startHub(t, fixtureRepo(t, "fmoe/tiny-chat", tinyChat))
	freeSpace = func(string) int64 { return 1_000_000 }
	defer func() { freeSpace = freeBytes }()
	_, err := pull(t, newTestClient(srv, t.TempDir(), ""), "hf://fmoe/tiny-chat", Options{})
	if err == nil || !strings.Contains(err.Error(), "needs 0.01 GB free") || !strings.Contains(err.Error(), "it has 0.00 GB") {
		t.Errorf("no room: %v", err)
	}
	if n := srv.Stats.BodyBytes("model-00001-of-00003.safetensors"); n != 0 {
		t.Errorf("fetched %d bytes of a shard that cannot fit", n)
	}
}

// TestPullRangeIgnored: a server that answers the resume's Range with the whole file makes
// the file start over (nothing of the 200 is appended to the partial file), and the result is
// right.
func TestPullRangeIgnored(t *testing.T) {
	repo := fixtureRepo(t, "fmoe/tiny-chat", tinyChat)
	srv := startHub(t, repo)
	cache := t.TempDir()
	const shard = "model-00001-of-00003.safetensors"
	srv.DropAt(shard, int64(len(repo.Files[shard].Data)/2))
	if _, err := pull(t, newTestClient(srv, cache, ""), "hf://fmoe/tiny-chat", Options{}); err == nil {
		t.Fatal("the dropped pull succeeded")
	}
	srv.DropAt(shard, -1)
	srv.IgnoreRange(shard, true)
	var log bytes.Buffer
	res, err := pull(t, newTestClient(srv, cache, ""), "hf://fmoe/tiny-chat", Options{Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "starting the file over") {
		t.Errorf("log does not say the file started over: %q", log.String())
	}
	sameFiles(t, tinyChat, res.Dir, res)
	noPartials(t, cache)
}
