package scripts_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGoTraceShare: go-trace-share.py finds, in a Go execution trace, the
// CPU share's regions as runtime/model marks them (share.start with its
// expert count logged, then share.gateup, share.swiglu and share.down on
// the share's own goroutine, share.wait on the caller's) and reports each
// stage's median no shorter than the time the stand-in spent in it, and
// the workers the gate/up stage woke.
func TestGoTraceShare(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	path := filepath.Join(t.TempDir(), "share.trace")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := trace.Start(f); err != nil {
		t.Fatal(err)
	}
	const shares, workers = 3, 4
	for range shares {
		fakeShare(workers)
		fakeTask(workers)
	}
	trace.Stop()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(py, "go-trace-share.py", path, "--go", goBin).CombinedOutput()
	if err != nil {
		t.Fatalf("go-trace-share.py: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header of two lines and two rows (ops and task, 2 experts), got:\n%s", out)
	}
	cols := strings.Fields(lines[0])
	row := strings.Fields(strings.NewReplacer("(", " ", ")", " ").Replace(lines[2]))
	// share kind, experts, shares, woken, then a median and a p90 per stage.
	if row[0] != "ops" || row[1] != "2" || row[2] != strconv.Itoa(shares) {
		t.Fatalf("row %q: want ops, 2 experts, %d shares", lines[2], shares)
	}
	if w, _ := strconv.Atoi(row[3]); w < workers {
		t.Errorf("woken %d: want at least the %d workers", w, workers)
	}
	median := func(stage string) float64 {
		for i, c := range cols[4:] {
			if c == stage {
				v, err := strconv.ParseFloat(row[4+2*i], 64)
				if err != nil {
					t.Fatalf("%s: %v in %q", stage, err, lines[2])
				}
				return v
			}
		}
		t.Fatalf("no column %s in %q", stage, lines[0])
		return 0
	}
	for stage, least := range map[string]float64{"gateup": 2000, "swiglu": 200, "down": 1000, "wait": 1000, "total": 3200} {
		if v := median(stage); v < least {
			t.Errorf("%s median %.1f µs: want at least %.0f, the time spent in it", stage, v, least)
		}
	}
	// The task's row: its parts counted, its total the parts' 2 ms at least.
	task := strings.Fields(strings.NewReplacer("(", " ", ")", " ").Replace(lines[3]))
	if task[0] != "task" || task[1] != "2" || task[2] != strconv.Itoa(shares) || task[3] != strconv.Itoa(workers) {
		t.Fatalf("row %q: want task, 2 experts, %d shares, %d parts", lines[3], shares, workers)
	}
	if v, err := strconv.ParseFloat(task[len(task)-2], 64); err != nil || v < 2000 {
		t.Errorf("task total %q: want at least 2000 µs", task[len(task)-2])
	}
}

// fakeTask marks one share of two experts handed to workers as one task
// (cpu.Backend.StartExperts): a share.task region on each worker.
func fakeTask(workers int) {
	ctx := context.Background()
	r := trace.StartRegion(ctx, "share.start")
	trace.Log(ctx, "share.experts", "2")
	r.End()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			defer trace.StartRegion(ctx, "share.task").End()
			time.Sleep(2 * time.Millisecond)
		})
	}
	w := trace.StartRegion(ctx, "share.wait")
	wg.Wait()
	w.End()
}

// fakeShare marks one share of two experts as runtime/model does, with
// its stages' times slept and workers woken in the gate/up stage.
func fakeShare(workers int) {
	ctx := context.Background()
	r := trace.StartRegion(ctx, "share.start")
	trace.Log(ctx, "share.experts", "2")
	r.End()
	done := make(chan struct{})
	go func() {
		r := trace.StartRegion(ctx, "share.gateup")
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() { time.Sleep(time.Millisecond) })
		}
		time.Sleep(2 * time.Millisecond)
		wg.Wait()
		r.End()
		r = trace.StartRegion(ctx, "share.swiglu")
		time.Sleep(200 * time.Microsecond)
		r.End()
		r = trace.StartRegion(ctx, "share.down")
		time.Sleep(time.Millisecond)
		r.End()
		close(done)
	}()
	w := trace.StartRegion(ctx, "share.wait")
	<-done
	w.End()
}
