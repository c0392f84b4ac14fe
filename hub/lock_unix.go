//go:build linux || darwin

package hub

import (
	"os"
	"path/filepath"
	"syscall"
)

// lockFile takes the exclusive flock huggingface_hub's filelock takes on the same path, so
// two downloads of one blob (from fmoe or Python) never write the same partial file.
func lockFile(p string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	fh, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX); err != nil {
		fh.Close()
		return nil, err
	}
	return func() {
		syscall.Flock(int(fh.Fd()), syscall.LOCK_UN)
		fh.Close()
	}, nil
}

// freeBytes is the space left to an unprivileged user on the file system holding dir
// (dir's nearest existing ancestor), or -1 when unknown.
func freeBytes(dir string) int64 {
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err == nil {
			return int64(st.Bavail) * int64(st.Bsize)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return -1
		}
		dir = parent
	}
}

// SameFileSystem reports whether a and b (or their nearest existing ancestors) are on one
// file system, so that space needed in both comes out of one free count.
func SameFileSystem(a, b string) bool {
	da, ok1 := device(a)
	db, ok2 := device(b)
	return ok1 && ok2 && da == db
}

func device(dir string) (uint64, bool) {
	for {
		var st syscall.Stat_t
		if err := syscall.Stat(dir, &st); err == nil {
			return uint64(st.Dev), true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return 0, false
		}
		dir = parent
	}
}
