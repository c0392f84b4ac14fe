package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as fmoe-pack: run with this variable set, it runs main with the
// arguments after "--", so tests see real exit codes, stderr and signal handling.
func init() {
	if os.Getenv("FMOE_PACK_TEST_MAIN") == "1" {
		for i, a := range os.Args {
			if a == "--" {
				os.Args = append([]string{"fmoe-pack"}, os.Args[i+1:]...)
				break
			}
		}
		main()
		os.Exit(0)
	}
}

// fmoePack starts the command; wait with result.
func fmoePack(t *testing.T, ctx context.Context, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "FMOE_PACK_TEST_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &stderr
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if err == nil {
		return 0
	}
	if !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return ee.ExitCode()
}

// copyTree copies a flat fixture folder.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readTree is every file under dir by relative path.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			out[rel] = string(b)
		}
		return nil
	})
	return out
}

// The case: --out equal to --in, or above it, with --force, deleted the checkpoint.
// Now it is a usage error (exit 2) naming both paths, and the source is untouched.
func TestConvertOutOverInIsUsageError(t *testing.T) {
	root := t.TempDir()
	src := filepath.Join(root, "ckpt")
	copyTree(t, "../../testdata/tiny/mlx-4bit", src)
	before := readTree(t, root)
	for _, out := range []string{src, src + "/", root, src + "/..", filepath.Join(src, "out")} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd, stderr := fmoePack(t, ctx, "convert", "--in", src, "--out", out, "--force", "-q")
		code := exitCode(t, cmd.Wait())
		cancel()
		if code != 2 || !strings.Contains(stderr.String(), "refusing to write --out "+out) {
			t.Errorf("--out %s: exit %d, stderr %q; want exit 2 and a refusal", out, code, stderr)
		}
		after := readTree(t, root)
		if len(after) != len(before) {
			t.Errorf("--out %s: %d files before, %d after", out, len(before), len(after))
		}
		for k, v := range before {
			if after[k] != v {
				t.Errorf("--out %s: %s changed or vanished", out, k)
			}
		}
	}
}
