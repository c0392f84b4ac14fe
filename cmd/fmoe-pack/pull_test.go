package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/hub/hubtest"
	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/pack"
)

const tinyChat = "../../models/fmoe-tiny-chat/mlx-4bit"

// hubEnv points the Hub settings at srv and a fresh cache, away from the user's own.
func hubEnv(t *testing.T, srv *hubtest.Server) (home string) {
	home = t.TempDir()
	t.Setenv("HF_ENDPOINT", srv.URL())
	t.Setenv("HF_HOME", home)
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HUGGINGFACE_HUB_CACHE", "")
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HUGGING_FACE_HUB_TOKEN", "")
	t.Setenv("HF_TOKEN_PATH", "")
	t.Setenv("HF_HUB_OFFLINE", "")
	return home
}

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errw strings.Builder
	code = cliutil.RunArgs(newApp(), append([]string{"fmoe-pack"}, args...), &out, &errw)
	return code, out.String(), errw.String()
}

func TestPullCommand(t *testing.T) {
	gated, err := hubtest.RepoFromDir("fmoe/gated", tinyChat)
	if err != nil {
		t.Fatal(err)
	}
	gated.Gated, gated.Access = true, []string{"hf_file_token"}
	srv := hubtest.New([]*hubtest.Repo{gated}, "hf_file_token")
	defer srv.Close()
	home := hubEnv(t, srv)

	code, _, stderr := run(t, "pull", "hf://fmoe/gated")
	if code != 1 || !strings.Contains(stderr, "gated repository and no token is set") || !strings.Contains(stderr, "HF_TOKEN=") {
		t.Fatalf("gated without a token: exit %d, %q", code, stderr)
	}
	// The token file `hf auth login` writes is used when HF_TOKEN is not set.
	os.WriteFile(filepath.Join(home, "token"), []byte("hf_file_token\n"), 0o600)
	code, stdout, stderr := run(t, "pull", "-q", "hf://fmoe/gated@main")
	want := filepath.Join(home, "hub", "models--fmoe--gated", "snapshots", gated.Commit)
	if code != 0 || strings.TrimSpace(stdout) != want {
		t.Fatalf("pull: exit %d, stdout %q (want %s), stderr %q", code, stdout, want, stderr)
	}
	if b, err := os.ReadFile(filepath.Join(want, "model-00003-of-00003.safetensors")); err != nil || len(b) != len(gated.Files["model-00003-of-00003.safetensors"].Data) {
		t.Errorf("shard not in the snapshot: %v", err)
	}
	srv.Close()
	t.Setenv("HF_HUB_OFFLINE", "1")
	code, stdout, stderr = run(t, "pull", "hf://fmoe/gated")
	if code != 0 || strings.TrimSpace(stdout) != want {
		t.Errorf("offline: exit %d, %q, %q", code, stdout, stderr)
	}
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"pull"}, "pull takes one hf://"},
		{[]string{"pull", "fmoe/gated"}, "is not a Hub reference"},
		{[]string{"pull", "hf://a/b", "extra"}, "got 2 arguments"},
		{[]string{"pull", "--workers", "0", "hf://a/b"}, "--workers 0"},
	} {
		if code, _, stderr := run(t, tc.args...); code != 2 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%q: exit %d, %q; want 2, %q", tc.args, code, stderr, tc.msg)
		}
	}
}

// TestConvertFromHub: convert --in hf://... packs exactly what convert of the same local
// folder packs, byte for byte.
func TestConvertFromHub(t *testing.T) {
	const src = "../../testdata/tiny/hf"
	repo, err := hubtest.RepoFromDir("fmoe/tiny-hf", src)
	if err != nil {
		t.Fatal(err)
	}
	srv := hubtest.New([]*hubtest.Repo{repo})
	defer srv.Close()
	hubEnv(t, srv)
	tmp := t.TempDir()
	fromHub, local := filepath.Join(tmp, "hub"), filepath.Join(tmp, "local")
	if code, _, stderr := run(t, "convert", "--in", "hf://fmoe/tiny-hf", "--out", fromHub, "-q"); code != 0 {
		t.Fatalf("convert from the Hub: exit %d: %s", code, stderr)
	}
	if code, _, stderr := run(t, "convert", "--in", src, "--out", local, "-q"); code != 0 {
		t.Fatalf("convert of the folder: exit %d: %s", code, stderr)
	}
	n := 0
	filepath.Walk(local, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(local, p)
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(filepath.Join(fromHub, rel))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s differs between the two packs (%v)", rel, err)
		}
		n++
		return nil
	})
	m := 0
	filepath.Walk(fromHub, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			m++
		}
		return err
	})
	if n == 0 || n != m {
		t.Errorf("local pack has %d files, the Hub's %d", n, m)
	}
	if code, _, stderr := run(t, "convert", "--in", "hf://fmoe/nothing", "--out", filepath.Join(tmp, "x")); code != 1 || !strings.Contains(stderr, "fmoe/nothing not found") {
		t.Errorf("convert of a missing repository: exit %d, %q", code, stderr)
	}
	if code, _, stderr := run(t, "convert", "--in", "hf://nothing", "--out", filepath.Join(tmp, "x")); code != 2 || !strings.Contains(stderr, "--in") {
		t.Errorf("convert of a bad reference: exit %d, %q", code, stderr)
	}
}

// TestConvertStreamCommand: convert --stream from the Hub packs what convert of the local
// folder packs, says what it needs before downloading, leaves no shard in the cache, and
// refuses --stream without a Hub reference.
func TestConvertStreamCommand(t *testing.T) {
	const src = "../../testdata/tiny/hf"
	repo, err := hubtest.RepoFromDir("fmoe/tiny-hf", src)
	if err != nil {
		t.Fatal(err)
	}
	srv := hubtest.New([]*hubtest.Repo{repo})
	defer srv.Close()
	home := hubEnv(t, srv)
	tmp := t.TempDir()
	streamed, local := filepath.Join(tmp, "stream"), filepath.Join(tmp, "local")
	code, stdout, stderr := run(t, "convert", "--in", "hf://fmoe/tiny-hf", "--out", streamed, "--stream", "-q")
	if code != 0 || !strings.Contains(stdout, "packed hf://fmoe/tiny-hf") {
		t.Fatalf("convert --stream: exit %d, %q, %q", code, stdout, stderr)
	}
	for _, s := range []string{"streaming needs ", "GB free: the pack (at most", "of the 34 shards"} {
		if !strings.Contains(stderr, s) {
			t.Errorf("stderr does not say %q: %q", s, stderr)
		}
	}
	if code, _, stderr := run(t, "convert", "--in", src, "--out", local, "-q"); code != 0 {
		t.Fatalf("convert of the folder: exit %d: %s", code, stderr)
	}
	filepath.Walk(local, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(local, p)
		want, _ := os.ReadFile(p)
		if got, err := os.ReadFile(filepath.Join(streamed, rel)); err != nil || string(got) != string(want) {
			t.Errorf("%s differs between the streamed and the local pack (%v)", rel, err)
		}
		return nil
	})
	for name, f := range repo.Files {
		if _, err := os.Stat(filepath.Join(home, "hub", "models--fmoe--tiny-hf", "blobs", hubtest.SHA256(f.Data))); f.LFS && err == nil {
			t.Errorf("shard %s is left in the cache", name)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"convert", "--in", "hf://fmoe/tiny-hf", "--out", streamed, "--stream", "-q"}, 2, "--out " + streamed + " already exists (use --force to replace it"},
		{[]string{"convert", "--in", "hf://fmoe/tiny-hf", "--out", streamed, "-q"}, 2, "--out " + streamed + " already exists (use --force to replace it"},
		{[]string{"convert", "--in", "hf://fmoe/missing", "--out", filepath.Join(tmp, "m"), "--stream", "-q"}, 1, "fmoe/missing"},
		{[]string{"convert", "--in", "hf://fmoe/tiny-hf@nobranch", "--out", filepath.Join(tmp, "m"), "--stream", "-q"}, 1, "nobranch"},
	} {
		if code, _, stderr := run(t, tc.args...); code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%q: exit %d, %q; want %d, %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "m")); !os.IsNotExist(err) {
		t.Errorf("a failed --stream left %s", filepath.Join(tmp, "m"))
	}
	// Offline there is nothing to stream: the cached snapshot would be packed, but a stream
	// leaves no complete snapshot (no refs/main), and says so.
	t.Setenv("HF_HUB_OFFLINE", "1")
	code, _, stderr = run(t, "convert", "--in", "hf://fmoe/tiny-hf", "--out", filepath.Join(tmp, "offline"), "--stream", "-q")
	if code != 1 || !strings.Contains(stderr, "nothing to stream") || !strings.Contains(stderr, "fmoe/tiny-hf@main is not in the cache") {
		t.Errorf("offline --stream after a stream: exit %d, %q", code, stderr)
	}
	t.Setenv("HF_HUB_OFFLINE", "")
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"convert", "--in", src, "--out", filepath.Join(tmp, "x"), "--stream"}, "--stream packs while downloading from the Hub"},
		{[]string{"convert", "--in", "hf://a/b", "--out", filepath.Join(tmp, "x"), "--stream", "--downloads", "0"}, "--downloads 0"},
	} {
		if code, _, stderr := run(t, tc.args...); code != 2 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%q: exit %d, %q; want 2, %q", tc.args, code, stderr, tc.msg)
		}
	}
}

func TestCheckStreamSpace(t *testing.T) {
	p := &pack.StreamPlan{PackBytes: 200e9, SpoolBytes: 2e9, WindowBytes: 15e9, WindowShards: 3, Shards: 94, DownloadBytes: 800e9}
	var log strings.Builder
	free := map[string]int64{"/out": 210e9, "/cache": 100e9}
	get := func(d string) int64 { return free[d] }
	same := func(a, b string) bool { return true }
	err := checkStreamSpace(&log, p, "/cache", "/out/pack", get, same)
	if err == nil || !strings.Contains(err.Error(), "streaming needs 217.00 GB free in /out, it has 210.00 GB") {
		t.Errorf("one disk, too small: %v", err)
	}
	if !strings.Contains(log.String(), "at most 3 of the 94 shards (15.00 GB, of 800.00 GB to download)") {
		t.Errorf("log: %q", log.String())
	}
	// Two disks: each is checked for its own part.
	differ := func(a, b string) bool { return false }
	if err := checkStreamSpace(io.Discard, p, "/cache", "/out/pack", get, differ); err != nil {
		t.Errorf("two disks with room: %v", err)
	}
	free["/cache"] = 10e9
	if err := checkStreamSpace(io.Discard, p, "/cache", "/out/pack", get, differ); err == nil || !strings.Contains(err.Error(), "15.00 GB free in /cache") {
		t.Errorf("cache disk too small: %v", err)
	}
}
