package model

import (
	"go/build"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fmoe-run must not link the packer (issue 10): runtime/model once imported package pack only
// for the LZ4 reader. This walks the non-test imports of the run path within the module, for
// each OS the runtime builds for, and fails if pack is among them.
func TestRunDoesNotLinkPack(t *testing.T) {
	const mod = "github.com/fmoe/fmoe/"
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..")
	for _, goos := range []string{"linux", "darwin"} {
		ctx := build.Default
		ctx.GOOS, ctx.GOARCH = goos, "arm64"
		seen := map[string]string{} // package -> the package that imported it
		var walk func(path string)
		walk = func(path string) {
			p, err := ctx.ImportDir(filepath.Join(root, strings.TrimPrefix(path, mod)), 0)
			if err != nil {
				t.Fatalf("%s: %s: %v", goos, path, err)
			}
			for _, imp := range p.Imports {
				if _, ok := seen[imp]; ok || !strings.HasPrefix(imp, mod) {
					continue
				}
				seen[imp] = path
				walk(imp)
			}
		}
		for _, start := range []string{mod + "cmd/fmoe-run", mod + "runtime/model"} {
			walk(start)
		}
		if len(seen) < 5 {
			t.Fatalf("%s: only %d module packages found: the walk is broken", goos, len(seen))
		}
		if by, ok := seen[mod+"pack"]; ok {
			t.Errorf("%s: fmoe-run links package pack (imported by %s)", goos, by)
		}
	}
}
