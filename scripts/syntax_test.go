// Package scripts_test checks the shell scripts of scripts/, most of which run only on the GPU
// machine, where a syntax error costs a device call (and a session's device time is 30 minutes).
package scripts_test

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestScriptsParse: bash -n reads every script here and in peer/ without a syntax error.
func TestScriptsParse(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	var files []string
	for _, g := range []string{"*.sh", "peer/*.sh"} {
		m, err := filepath.Glob(g)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 10 {
		t.Fatalf("found %d scripts (%v): the test is not looking where the scripts are", len(files), files)
	}
	for _, f := range files {
		if out, err := exec.Command(bash, "-n", f).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", f, err, out)
		}
	}
}
