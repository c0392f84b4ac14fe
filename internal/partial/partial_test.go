package partial

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range entries {
		n = append(n, e.Name())
	}
	return n
}

func TestCreateCommitLeavesOnlyTheOutput(t *testing.T) {
	dir := t.TempDir()
	d, err := Create(dir, "out")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(d.Path, filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	d.Release()
	if got := names(t, dir); len(got) != 1 || got[0] != "out" {
		t.Errorf("left %v", got)
	}
}

// writeLock fakes the lock of a partial written by another process.
func writeLock(t *testing.T, dir, name string, o owner) string {
	t.Helper()
	path := filepath.Join(dir, ".out.partial-"+name)
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(path, "layer_00.bin"), []byte("half"), 0o644)
	if err := os.WriteFile(path+lockExt, []byte(o.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCleanStale(t *testing.T) {
	me := selfOwner()
	recycled := me
	recycled.start = "1" // this pid, but a process that started at another time
	otherBoot := me
	otherBoot.boot = "another-boot"
	otherHost := me
	otherHost.host = me.host + "-elsewhere"
	otherHost.pid = 1 << 30
	cases := []struct {
		name    string
		o       owner
		removed bool
		why     string
	}{
		{"pid recycled", recycled, true, ""},
		{"earlier boot", otherBoot, true, ""},
		{"pid free", owner{pid: 1 << 30, start: "5", boot: me.boot, host: me.host}, true, ""},
		// Its pid and start time match a live process: even without the flock (a file system
		// that ignores it), it is kept.
		{"owner alive", me, false, "may still be running"},
		{"another machine", otherHost, false, "may still be running"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeLock(t, dir, "abc", c.o)
			removed, kept := CleanStale(dir, "out")
			_, err := os.Stat(path)
			if c.removed {
				if len(removed) != 1 || removed[0].Path != path || err == nil || len(names(t, dir)) != 0 {
					t.Errorf("removed %v kept %v, dir %v", removed, kept, names(t, dir))
				}
				return
			}
			if len(kept) != 1 || !strings.Contains(kept[0].Reason, c.why) || err != nil {
				t.Errorf("removed %v kept %v", removed, kept)
			}
		})
	}
}

// A partial this process is writing is held by its flock, whatever the record says.
func TestHeldLockKept(t *testing.T) {
	dir := t.TempDir()
	d, err := Create(dir, "out")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Abandon()
	// Make the record claim a dead owner: only the flock protects it now.
	os.WriteFile(d.Path+lockExt, []byte(owner{pid: 1 << 30, start: "5", host: selfOwner().host}.String()), 0o644)
	removed, kept := CleanStale(dir, "out")
	if len(removed) != 0 || len(kept) != 1 || !strings.Contains(kept[0].Reason, "another process is writing it") {
		t.Errorf("removed %v kept %v", removed, kept)
	}
}

// A folder without a lock (an older fmoe-pack) can't be proved dead: kept, with the reason.
// Other outputs' partials are not this run's business.
func TestUnownedAndOthersKept(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, ".out.partial-123"), 0o700)
	writeLock(t, dir, "zzz", owner{pid: 1 << 30, start: "5", boot: bootID(), host: selfOwner().host})
	os.Rename(filepath.Join(dir, ".out.partial-zzz"), filepath.Join(dir, ".other.partial-zzz"))
	os.Rename(filepath.Join(dir, ".out.partial-zzz.lock"), filepath.Join(dir, ".other.partial-zzz.lock"))
	removed, kept := CleanStale(dir, "out")
	if len(removed) != 0 || len(kept) != 1 || !strings.Contains(kept[0].Reason, "no owner record") {
		t.Errorf("removed %v kept %v", removed, kept)
	}
	if got := Find(dir); len(got) != 2 {
		t.Errorf("Find: %v", got)
	}
}

// A run killed between parking the old output and moving the new one in: the old output is
// put back rather than lost.
func TestParkedOutputRestored(t *testing.T) {
	dir := t.TempDir()
	path := writeLock(t, dir, "abc", owner{pid: 1 << 30, start: "5", boot: bootID(), host: selfOwner().host})
	os.Mkdir(path+".old", 0o755)
	os.WriteFile(filepath.Join(path+".old", "model_weights.json"), []byte("old"), 0o644)
	CleanStale(dir, "out")
	if b, err := os.ReadFile(filepath.Join(dir, "out", "model_weights.json")); err != nil || string(b) != "old" {
		t.Errorf("old output not restored: %q %v", b, err)
	}
	if got := names(t, dir); len(got) != 1 {
		t.Errorf("left %v", got)
	}
}

// The child for TestKilledOwner: it makes a partial, says where, and waits to be killed.
func TestOwnerChild(t *testing.T) {
	dir := os.Getenv("PARTIAL_TEST_CHILD_DIR")
	if dir == "" {
		return
	}
	d, err := Create(dir, "out")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d.Path, "layer_00.bin"), []byte("half"), 0o644)
	os.Stdout.WriteString(d.Path + "\n")
	time.Sleep(time.Minute)
}

// A real process killed with SIGKILL: while it lives its partial is kept; once it is dead
// (and reaped) the next run removes it.
func TestKilledOwner(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestOwnerChild$")
	cmd.Env = append(os.Environ(), "PARTIAL_TEST_CHILD_DIR="+dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		t.Fatal("child said nothing")
	}
	path := sc.Text()
	removed, kept := CleanStale(dir, "out")
	if len(removed) != 0 || len(kept) != 1 || kept[0].Path != path {
		t.Fatalf("live owner: removed %v kept %v", removed, kept)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if _, err := os.Stat(path); err != nil {
		t.Fatal("the killed child's partial should still be there")
	}
	removed, kept = CleanStale(dir, "out")
	if len(removed) != 1 || removed[0].Path != path || len(kept) != 0 {
		t.Fatalf("dead owner: removed %v kept %v", removed, kept)
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("left %v", got)
	}
}
