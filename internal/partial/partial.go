// Package partial gives every output a command builds under a temporary name an owner that a
// later run can check: beside .NAME.partial-R (the folder being written) lies
// .NAME.partial-R.lock, holding the writer's pid, the start time the kernel gives that pid and
// the boot it belongs to, and kept flock-ed while the writer lives. After kill -9 (or a power
// cut) the next run for the same NAME finds the lock free and the pid gone or reused, and
// removes what was left; a partial whose owner may still live is never touched.
package partial

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	infix   = ".partial-"
	lockExt = ".lock"
)

// Dir is a partial output owned by this process.
type Dir struct {
	Path string // the folder to write into
	lock *os.File
}

// prefix is how every partial of final's name begins.
func prefix(base string) string { return "." + base + infix }

// Create makes parent/.base.partial-R and its lock. The lock is taken and filled before the
// folder exists, so a folder found later always has an owner record beside it.
func Create(parent, base string) (*Dir, error) {
	var nonce [6]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	path := filepath.Join(parent, prefix(base)+hex.EncodeToString(nonce[:]))
	lf, err := os.OpenFile(path+lockExt, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	fail := func(err error) (*Dir, error) {
		lf.Close()
		os.Remove(path + lockExt)
		return nil, fmt.Errorf("output: %w", err)
	}
	if err := lockFile(lf); err != nil {
		return fail(err)
	}
	if _, err := lf.WriteString(selfOwner().String()); err != nil {
		return fail(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		return fail(err)
	}
	return &Dir{Path: path, lock: lf}, nil
}

// OldPath is where a command parks the output it replaces until the new one is in place; the
// lock covers it too.
func (d *Dir) OldPath() string { return d.Path + ".old" }

// Release drops the lock once the folder has been renamed into place (or removed).
func (d *Dir) Release() {
	if d.lock == nil {
		return
	}
	os.Remove(d.lock.Name())
	d.lock.Close()
	d.lock = nil
}

// Abandon removes the partial folder and the lock.
func (d *Dir) Abandon() {
	os.RemoveAll(d.Path)
	d.Release()
}

// owner identifies a process across pid reuse and reboots.
type owner struct {
	pid   int
	start string // /proc/PID/stat starttime; "" where unknown
	boot  string // /proc/sys/kernel/random/boot_id; "" where unknown
	host  string
}

func (o owner) String() string {
	return fmt.Sprintf("pid %d\nstart %s\nboot %s\nhost %s\n", o.pid, o.start, o.boot, o.host)
}

func selfOwner() owner {
	host, _ := os.Hostname()
	pid := os.Getpid()
	return owner{pid: pid, start: startTime(pid), boot: bootID(), host: host}
}

func parseOwner(b []byte) (owner, bool) {
	var o owner
	seen := 0
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		switch k {
		case "pid":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return o, false
			}
			o.pid = n
		case "start":
			o.start = v
		case "boot":
			o.boot = v
		case "host":
			o.host = v
		default:
			continue
		}
		seen++
	}
	return o, seen == 4
}

// gone reports whether the recorded owner has provably exited: on another boot, or its pid is
// free, or the pid now belongs to a process started at another time.
func (o owner) gone() bool {
	me := selfOwner()
	if o.host != me.host {
		return false // another machine sharing the disk: nothing can be proved from here
	}
	if o.boot != "" && me.boot != "" && o.boot != me.boot {
		return true
	}
	if !pidExists(o.pid) {
		return true
	}
	now := startTime(o.pid)
	return o.start != "" && now != "" && now != o.start
}

// Leftover is a partial output found on disk.
type Leftover struct {
	Path   string // the folder (it may be gone while the lock remains)
	Reason string // why it was kept, or what became of it
}

// CleanStale removes the partials of parent/base whose owners are provably dead, restoring an
// output that was parked as .old when the run died between its two renames. It returns what it
// removed and what it kept (with the reason), and never fails the caller's run for a leftover.
func CleanStale(parent, base string) (removed, kept []Leftover) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil, nil
	}
	pre := prefix(base)
	locks := map[string]bool{}
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, pre) && strings.HasSuffix(n, lockExt) {
			locks[strings.TrimSuffix(n, lockExt)] = true
		}
	}
	for name := range locks {
		path := filepath.Join(parent, name)
		if why, ok := claimDead(path); !ok {
			kept = append(kept, Leftover{path, why})
			continue
		}
		final := filepath.Join(parent, base)
		if _, err := os.Lstat(final); errors.Is(err, os.ErrNotExist) {
			os.Rename(path+".old", final) // the run died with the old output parked: put it back
		}
		os.RemoveAll(path + ".old")
		os.RemoveAll(path)
		os.Remove(path + lockExt)
		removed = append(removed, Leftover{path, "its writer is no longer running"})
	}
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, pre) || strings.HasSuffix(n, lockExt) {
			continue
		}
		if locks[strings.TrimSuffix(n, ".old")] {
			continue
		}
		kept = append(kept, Leftover{filepath.Join(parent, n), "it has no owner record, so whether its writer still runs cannot be told; remove it if no fmoe-pack is running"})
	}
	return removed, kept
}

// claimDead takes the lock of a partial if its owner is provably dead. The lock is left held
// by this process until exit or removal; the flock must be free and the owner gone, both.
func claimDead(path string) (string, bool) {
	lf, err := os.OpenFile(path+lockExt, os.O_RDWR, 0)
	if err != nil {
		return "its lock cannot be opened: " + err.Error(), false
	}
	if err := tryLock(lf); err != nil {
		lf.Close()
		return "another process is writing it", false
	}
	b, err := io.ReadAll(lf)
	lf.Close() // closing drops the flock; the removal below is idempotent if two runs race
	if err != nil {
		return "its lock cannot be read: " + err.Error(), false
	}
	o, ok := parseOwner(b)
	if !ok {
		return "its lock holds no owner record", false
	}
	if !o.gone() {
		return fmt.Sprintf("its writer (pid %d on %s) may still be running", o.pid, o.host), false
	}
	return "", true
}

// Find lists every partial output in dir (any name): verify warns about them.
func Find(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") && strings.Contains(n, infix) && !strings.HasSuffix(n, lockExt) {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out
}
