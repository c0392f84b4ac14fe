//go:build unix

package fsguard

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// within fails the test if fn has not returned in a few seconds: the bug was a hang.
func returnsSoon(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("still blocked after 5s")
	}
}

func TestOpenRegular(t *testing.T) {
	dir := t.TempDir()
	fifo, file, link := filepath.Join(dir, "shard.fifo"), filepath.Join(dir, "a.json"), filepath.Join(dir, "link.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(file, []byte("{}"), 0o644)
	os.Symlink("a.json", link)
	for _, c := range []struct{ path, want string }{
		{fifo, "is a named pipe (FIFO), not a regular file"},
		{dir, "is a directory"},
		{"/dev/null", "is a device"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		returnsSoon(t, func() {
			_, err := ReadRegular(c.path)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
				t.Errorf("%s: %v, want %q naming the path", c.path, err, c.want)
			}
		})
	}
	for _, p := range []string{file, link} {
		if b, err := ReadRegular(p); err != nil || string(b) != "{}" {
			t.Errorf("%s: %q %v", p, b, err)
		}
	}
}
