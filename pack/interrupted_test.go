package pack

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fmoe/fmoe/format"
)

// TestInterruptedChild is the process TestKilledRunsCleanedUp kills: it converts (or
// requantises) and stops half-way, saying so, until SIGKILL comes.
func TestInterruptedChild(t *testing.T) {
	mode, target := os.Getenv("PACK_TEST_CHILD"), os.Getenv("PACK_TEST_TARGET")
	if mode == "" {
		return
	}
	stall := func() {
		os.Stdout.WriteString("stalled\n")
		time.Sleep(time.Minute)
	}
	var err error
	switch mode {
	case "convert":
		_, err = Convert(context.Background(), Options{In: tiny + "mlx-4bit", Out: target, Force: true,
			create: func(p string) (outFile, error) {
				if strings.HasSuffix(p, "layer_03.bin") {
					stall()
				}
				return os.Create(p)
			}})
	case "requant":
		_, err = Requant(context.Background(), RequantOptions{Model: target, Bits: 2, Rule: "minmax",
			afterBlock: func(l, e int) error {
				if l == 2 {
					stall()
				}
				return nil
			}})
	}
	t.Fatalf("child finished: %v", err)
}

// killHalfway runs the child and SIGKILLs it once it stalls, then reaps it.
func killHalfway(t *testing.T, mode, target string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestInterruptedChild$")
	cmd.Env = append(os.Environ(), "PACK_TEST_CHILD="+mode, "PACK_TEST_TARGET="+target)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "stalled" {
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
}

func partials(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, ".*.partial-*"))
	return m
}

// kill -9 in the middle of convert leaves its partial folder (nothing can stop that); the next
// convert of the same output proves the writer dead, removes it and says so.
func TestKilledConvertCleanedUp(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "model")
	killHalfway(t, "convert", out)
	left := partials(t, parent)
	if len(left) != 2 { // the folder and its lock
		t.Fatalf("after kill -9: %v", left)
	}
	var log bytes.Buffer
	if _, err := Convert(context.Background(), Options{In: tiny + "mlx-4bit", Out: out, Log: &log}); err != nil {
		t.Fatal(err)
	}
	if got := partials(t, parent); len(got) != 0 {
		t.Errorf("still there: %v", got)
	}
	if !strings.Contains(log.String(), "removed "+strings.TrimSuffix(left[0], ".lock")+", left by an interrupted run (its writer is no longer running)") {
		t.Errorf("log %q", log.String())
	}
}

func TestKilledRequantCleanedUp(t *testing.T) {
	dir := rqPack(t, "mlx-4bit", Options{})
	before := snapshot(t, dir)
	killHalfway(t, "requant", dir)
	if left := partials(t, dir); len(left) != 2 {
		t.Fatalf("after kill -9: %v", left)
	}
	// The model itself is as it was: only the hidden partial was added.
	after := snapshot(t, dir)
	for k, v := range before {
		if !bytes.Equal(after[k], v) {
			t.Errorf("%s changed", k)
		}
	}
	var log bytes.Buffer
	if _, err := Requant(context.Background(), RequantOptions{Model: dir, Bits: 2, Rule: "minmax", Log: &log}); err != nil {
		t.Fatal(err)
	}
	if got := partials(t, dir); len(got) != 0 {
		t.Errorf("still there: %v", got)
	}
	if !strings.Contains(log.String(), "left by an interrupted run") {
		t.Errorf("log %q", log.String())
	}
	if m, err := format.Open(dir); err != nil || len(m.Experts) != 2 {
		t.Errorf("after the rerun: %v", err)
	}
}

// requant --force replacing a recorded set said "left by an interrupted run"; only a set the
// manifest does not record is one.
func TestRequantForceMessage(t *testing.T) {
	dir := rqPack(t, "mlx-4bit", Options{})
	if _, err := Requant(context.Background(), RequantOptions{Model: dir, Bits: 2, Rule: "minmax"}); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	if _, err := Requant(context.Background(), RequantOptions{Model: dir, Bits: 2, Rule: "mlx", Force: true, Log: &log}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log.String(), "interrupted") || !strings.Contains(log.String(), "removing the old set's files in "+filepath.Join(dir, "packed_experts_2bit")) {
		t.Errorf("--force log %q", log.String())
	}
	dir2 := rqPack(t, "mlx-4bit", Options{})
	os.MkdirAll(filepath.Join(dir2, "packed_experts_2bit"), 0o755)
	log.Reset()
	if _, err := Requant(context.Background(), RequantOptions{Model: dir2, Bits: 2, Rule: "minmax", Log: &log}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "the manifest does not record it (a run was interrupted after writing the set, before recording it)") {
		t.Errorf("unrecorded set log %q", log.String())
	}
}
