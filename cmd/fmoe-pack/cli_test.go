package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// A shard that is a named pipe used to hang convert for good, deaf to Ctrl-C; now it fails at
// once naming the file.
func TestConvertFIFOShardFailsAtOnce(t *testing.T) {
	src := filepath.Join(t.TempDir(), "ckpt")
	copyTree(t, "../../testdata/tiny/mlx-4bit", src)
	shard := filepath.Join(src, "model-00001-of-00003.safetensors")
	os.Remove(shard)
	if err := syscall.Mkfifo(shard, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd, stderr := fmoePack(t, ctx, "convert", "--in", src, "--out", filepath.Join(t.TempDir(), "o"), "-q")
	start := time.Now()
	code := exitCode(t, cmd.Wait())
	if code != 1 || !strings.Contains(stderr.String(), shard+" is a named pipe (FIFO), not a regular file") || time.Since(start) > 10*time.Second {
		t.Errorf("exit %d after %v, stderr %q", code, time.Since(start), stderr)
	}
}

// As the child of TestSecondSignalQuitsAtOnce, this takes fmoe-pack's signal context and then
// blocks in a read that ignores it, as a read from a stalled disk would.
func TestStuckChild(t *testing.T) {
	if os.Getenv("FMOE_PACK_TEST_STUCK") != "1" {
		return // only meaningful as the child
	}
	ctx, stop := signalContext()
	defer stop()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close() // held open (a dropped writer would be closed by the GC and end the read)
	go func() {
		<-ctx.Done()
		fmt.Println("cancelled")
	}()
	fmt.Println("ready")
	io.ReadAll(r) // never returns: nothing writes
}

// The first Ctrl-C (or SIGTERM) cancels the work and says so; if the work cannot stop, a
// second one ends the process at once with 128+signal.
func TestSecondSignalQuitsAtOnce(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestStuckChild$")
	cmd.Env = append(os.Environ(), "FMOE_PACK_TEST_STUCK=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(out)
	next := func() string {
		got := make(chan string, 1)
		go func() { lines.Scan(); got <- lines.Text() }()
		select {
		case s := <-got:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("no output from the child")
			return ""
		}
	}
	if s := next(); s != "ready" {
		t.Fatalf("child said %q", s)
	}
	cmd.Process.Signal(os.Interrupt)
	if s := next(); s != "cancelled" {
		t.Fatalf("after the first SIGINT the child said %q", s)
	}
	time.Sleep(200 * time.Millisecond) // the second handler is installed right after the cancel
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case <-waited:
		t.Fatal("the first signal ended the process: it should only cancel")
	case <-time.After(300 * time.Millisecond):
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-waited:
		if code := exitCode(t, err); code != 128+int(syscall.SIGTERM) {
			t.Errorf("child ended with %v, want exit %d", err, 128+int(syscall.SIGTERM))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second signal did not end the process")
	}
	if !strings.Contains(stderr.String(), "terminated again: quitting now") {
		t.Errorf("stderr %q", stderr.String())
	}
	if !strings.Contains(stderr.String(), "interrupt signal received: stopping and removing the partial output (send it again to quit at once)") {
		t.Errorf("stderr %q", stderr.String())
	}
}
