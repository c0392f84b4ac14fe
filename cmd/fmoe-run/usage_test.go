package main

import (
	"strings"
	"testing"

	"github.com/fmoe/fmoe/internal/cliutil"
)

// TestUsageExit: bad invocations exit 2 before a model is opened, with the
// server's words for the sampling settings; a failure at run time exits 1.
func TestUsageExit(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"generate", "--model", "$MODEL", "--prompt", "hi", "--temperature", "-1"}, 2, "--temperature must be between 0 and 2 (got -1)"},
		{[]string{"generate", "--model", "$MODEL", "--prompt", "hi", "--top-p", "2"}, 2, "--top-p must be in (0, 1] (got 2)"},
		{[]string{"generate", "--model", "$MODEL", "--prompt", "hi", "--top-k", "-1"}, 2, "--top-k must be 0 (off) or more (got -1)"},
		{[]string{"generate", "--model", "$MODEL", "--prompt", "hi", "--tokens", "0"}, 2, "--tokens must be at least 1 (got 0)"},
		{[]string{"chat", "--model", "$MODEL", "--temperature", "NaN"}, 2, "--temperature must be between 0 and 2 (got NaN)"},
		{[]string{"generate", "--model", "$MODEL", "--prompt", "hi", "--k", "0"}, 2, "--k must be at least 1"},
		{[]string{"serve", "--model", "$MODEL", "--k", "-2"}, 2, "--k must be at least 1"},
		{[]string{"generate", "--model", "$MODEL", "--prompt", "hi", "--backend", "gpu"}, 2, `--backend "gpu": want one of auto, cpu, cuda, metal`},
		{[]string{"generate", "--model", "/nonexistent", "--prompt", "hi"}, 2, "--model /nonexistent: not a directory"},
		{[]string{"generate", "--prompt", "hi"}, 2, "--model is required"},
		{[]string{"generate", "--model", "$MODEL", "--prompt", "hi", "--tokens", "x"}, 2, `invalid value "x" for flag -tokens`},
		{[]string{"generate", "--model", "$MODEL", "--prompt", "hi", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"generate", "--model", "$MODEL", "--prompt", "hi", "there", "--tokens", "2"}, 2, `unexpected argument "there --tokens 2"`},
		{[]string{"eval", "--model", "$MODEL"}, 2, "--eval is required"},
		{[]string{"generate", "--model", "$MODEL", "--prompt", "hi", "--tools", "/nonexistent/tools.json"}, 2, "--tools: open /nonexistent/tools.json: no such file"},
		{[]string{"chat", "--model", "$MODEL", "--tools", "/nonexistent/tools.json"}, 2, "--tools: open /nonexistent/tools.json"},
		{[]string{"chat", "--model", "$MODEL", "--system", "/nonexistent/system.txt"}, 2, "--system: open /nonexistent/system.txt: no such file"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"--bogus"}, 2, "flag provided but not defined"},
		{[]string{"generate", "--model", "$MODEL", "--prompt", "hi", "--k", "99"}, 1, "99 experts per token of 16"},
	} {
		_, err := runApp(t, "", tc.args...)
		var msg strings.Builder
		if code := cliutil.Status(err, "fmoe-run", &msg); code != tc.code || !strings.Contains(msg.String(), tc.msg) {
			t.Errorf("%q: exit %d, %q; want %d, %q", tc.args, code, msg.String(), tc.code, tc.msg)
		}
	}
}
