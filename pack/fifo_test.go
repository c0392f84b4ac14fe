//go:build unix

package pack

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fifoIn replaces a file of dir with a named pipe nothing writes to.
func fifoIn(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runWithin fails if fn blocks: opening a FIFO used to wait forever for a writer.
func runWithin(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("blocked for 10s")
	}
}

// Every file convert reads must be a regular file; a named pipe is an error naming it.
func TestConvertRefusesFIFO(t *testing.T) {
	for _, name := range []string{"model-00002-of-00003.safetensors", "config.json", "model.safetensors.index.json", "tokenizer.json", "chat_template.jinja"} {
		t.Run(name, func(t *testing.T) {
			d := copyDir(t, tiny+"mlx-4bit")
			p := fifoIn(t, d, name)
			runWithin(t, func() { expectFailure(t, d, Options{}, p, "named pipe", "not a regular file") })
		})
	}
	d := copyDir(t, tiny+"hf")
	os.WriteFile(filepath.Join(d, "generation_config.json"), nil, 0o644)
	p := fifoIn(t, d, "generation_config.json")
	runWithin(t, func() { expectFailure(t, d, Options{}, p, "named pipe") })
}

// requant and lz4 read the manifest and the layer files; a named pipe there fails at once.
func TestRequantAndLZ4RefuseFIFO(t *testing.T) {
	dir := rqPack(t, "mlx-4bit", Options{})
	p := fifoIn(t, dir, "model_weights.json")
	runWithin(t, func() {
		_, err := Requant(context.Background(), RequantOptions{Model: dir, Bits: 2})
		if err == nil || !containsAll(err.Error(), p, "named pipe") {
			t.Errorf("requant: %v", err)
		}
		_, err = LZ4(context.Background(), LZ4Options{Model: dir})
		if err == nil || !containsAll(err.Error(), p, "named pipe") {
			t.Errorf("lz4: %v", err)
		}
	})
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
