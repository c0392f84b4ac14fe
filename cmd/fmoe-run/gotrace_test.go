package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGoTrace: FMOE_GO_TRACE's file appears whole under its name when the
// trace stops, with no temporary left beside it; unset costs nothing; a
// folder that is not there is an error naming the variable.
func TestGoTrace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run.trace")
	stop, err := goTrace(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("%s exists before the trace stops (%v)", path, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Size() == 0 {
		t.Fatalf("the trace after stop: %v, %v", st, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("the folder holds %d files, want the trace alone", len(ents))
	}
	stop, err = goTrace("")
	if err != nil || stop() != nil {
		t.Fatalf("unset: %v", err)
	}
	_, err = goTrace(filepath.Join(dir, "missing", "run.trace"))
	if err == nil || !strings.Contains(err.Error(), "FMOE_GO_TRACE=") {
		t.Fatalf("a missing folder: %v, want an error naming FMOE_GO_TRACE", err)
	}
}
