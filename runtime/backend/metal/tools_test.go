package metal

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/shaders"
)

// repoRoot is the module root (tests run in the package directory).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// cxx returns the C++ compilers present: clang++ first (it can also check
// address spaces), then g++.
func cxx() []string {
	var have []string
	for _, c := range []string{"clang++", "g++"} {
		if _, err := exec.LookPath(c); err == nil {
			have = append(have, c)
		}
	}
	return have
}

func needCXX(t testing.TB) string {
	t.Helper()
	c := cxx()
	if len(c) == 0 {
		t.Skip("no C++ compiler (g++ or clang++) on PATH: the Metal kernel source checks need one")
	}
	return c[0]
}

// metalSource is the Metal translation unit the tests check: the
// embedded one, or the file FMOE_METAL_SOURCE names (to try a change to a
// body against the simulator before making it).
func metalSource() string {
	if p := os.Getenv("FMOE_METAL_SOURCE"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			panic(err)
		}
		return string(b)
	}
	return shaders.Metal()
}

// metalForMock is the Metal translation unit as the mock reads it: the
// attribute [[threadgroup(n)]] renamed, since the mock's empty
// `threadgroup` macro would otherwise eat its name (metal_mock.h).
func metalForMock() string {
	return strings.ReplaceAll(metalSource(), "[[threadgroup(", "[[fm_threadgroup(")
}

func writeFile(t testing.TB, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCmd(t testing.TB, dir string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}
