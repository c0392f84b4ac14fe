package metal

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestCrossBuild builds the module for macOS on Apple Silicon without cgo
// (the stub path: the whole module must build there) and vets this package
// for it, plus Windows, from whatever machine runs the tests. The cgo file
// cannot be compiled here: runtime/cgo for darwin needs the macOS SDK.
func TestCrossBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles the module")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	root := repoRoot(t)
	for _, c := range []struct {
		env  []string
		args []string
	}{
		{[]string{"GOOS=darwin", "GOARCH=arm64", "CGO_ENABLED=0"}, []string{"build", "./..."}},
		{[]string{"GOOS=darwin", "GOARCH=arm64", "CGO_ENABLED=0"}, []string{"vet", "./runtime/backend/metal", "./shaders"}},
		{[]string{"GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0"}, []string{"build", "./runtime/backend/..."}},
	} {
		cmd := exec.Command(gobin, c.args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), c.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%v go %v: %v\n%s", c.env, c.args, err, out)
		}
	}
}

// TestObjCBridgeCompiles checks fmmetal.m with clang under ARC against
// testdata/objcmock, which declares the Foundation and Metal API it uses
// as Apple's headers do: bridged casts, message syntax and types. Without
// clang (CI has g++ only) it is skipped; on a Mac `go build` does the real
// check.
func TestObjCBridgeCompiles(t *testing.T) {
	clang, err := exec.LookPath("clang")
	if err != nil {
		t.Skip("clang is not on PATH: cannot check the Objective-C bridge off macOS")
	}
	res, err := exec.Command(clang, "-print-resource-dir").Output()
	if err != nil {
		t.Skipf("clang -print-resource-dir: %v", err)
	}
	inc := filepath.Join(string(res[:len(res)-1]), "include")
	out, err := exec.Command(clang, "-fsyntax-only", "-fobjc-arc", "-fblocks", "-x", "objective-c",
		"-target", "arm64-apple-macos11", "-ffreestanding", "-nostdinc", "-isystem", inc,
		"-Wall", "-Wextra", "-Werror", "-I", filepath.Join("testdata", "objcmock"), "fmmetal.m").CombinedOutput()
	if err != nil {
		t.Fatalf("fmmetal.m: %v\n%s", err, out)
	}
}
