package pagecache

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestDropWillNeed: on Linux both calls succeed on a regular file; elsewhere
// both say ErrUnsupported.
func TestDropWillNeed(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, make([]byte, 1<<16), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name, fn := range map[string]func(*os.File) error{"Drop": Drop, "WillNeed": WillNeed} {
		err := fn(f)
		if runtime.GOOS == "linux" && err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if runtime.GOOS != "linux" && !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", name, err)
		}
	}
}
