// Package convotest gives test binaries the built-in fmoe-tiny-chat model, packed once into a
// temporary directory and opened as a convo.Engine.
package convotest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/fmoe/fmoe/convo"
	"github.com/fmoe/fmoe/pack"
	"github.com/fmoe/fmoe/runtime/model"
)

// Main packs src (the built-in model's mlx-4bit directory, relative to the test's package),
// opens it into *engine, runs the tests and exits with their status.
func Main(m *testing.M, src string, engine **convo.Engine) {
	root, err := os.MkdirTemp("", "fmoe-convo-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(root)
		dir := filepath.Join(root, "fmoe-tiny-chat")
		if _, err := pack.Convert(context.Background(), pack.Options{In: src, Out: dir}); err != nil {
			fmt.Fprintln(os.Stderr, "pack:", err)
			return 1
		}
		e, err := convo.Open(dir, model.Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer e.Close()
		*engine = e
		return m.Run()
	}()
	os.Exit(code)
}
