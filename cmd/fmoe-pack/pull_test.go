package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/hub/hubtest"
	"github.com/fmoe/fmoe/internal/cliutil"
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
