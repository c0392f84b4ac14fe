package metal

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
// `threadgroup` macro would otherwise eat its name (metal_mock.h), and, for
// the embedded source, a #line before each part so that compiler messages
// and the simulator's barrier sites name the file and line of the body.
func metalForMock() string {
	if os.Getenv("FMOE_METAL_SOURCE") != "" {
		return mockAttrs(metalSource())
	}
	return mockTU(shaders.Bodies()...)
}

// mockTU is the Metal prelude followed by bodies, each part after a #line
// naming it (by its first line, "// name.h: …").
func mockTU(bodies ...string) string {
	var b strings.Builder
	for i, part := range append([]string{shaders.PreludeMetal()}, bodies...) {
		name := fmt.Sprintf("body%d", i)
		if m := partNameRE.FindStringSubmatch(part); m != nil {
			name = m[1]
		}
		fmt.Fprintf(&b, "#line 1 %q\n%s\n", name, mockAttrs(part))
	}
	return b.String()
}

var partNameRE = regexp.MustCompile(`^//\s*([\w.-]+\.h):`)

func mockAttrs(src string) string {
	return strings.ReplaceAll(src, "[[threadgroup(", "[[fm_threadgroup(")
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
