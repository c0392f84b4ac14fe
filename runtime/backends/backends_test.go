package backends

import (
	"bytes"
	"strings"
	"testing"
)

func TestOpen(t *testing.T) {
	be, err := Open("cpu", Options{})
	if err != nil || be.Name() == "" {
		t.Fatalf("cpu: %v", err)
	}
	be.Close()
	var log bytes.Buffer
	be, err = Open("auto", Options{Log: &log})
	if err != nil {
		t.Fatalf("auto must always give a backend: %v", err)
	}
	be.Close()
	if !strings.HasPrefix(log.String(), "backend: ") {
		t.Errorf("auto did not say what it chose: %q", log.String())
	}
	if _, err := Open("tpu", Options{}); err == nil || !strings.Contains(err.Error(), "cpu") {
		t.Errorf("unknown backend: %v", err)
	}
}
