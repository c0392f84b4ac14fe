package chatui

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/chat"
)

func TestVisible(t *testing.T) {
	for in, want := range map[string]string{
		"rm -rf ~/important \x1b[2K\x1b[1Gecho hello": `rm -rf ~/important \x1b[2K\x1b[1Gecho hello`,
		"rm -rf ~\recho hi":                           `rm -rf ~\recho hi`,
		"rm x\b\b\b\becho":                            `rm x\b\b\b\becho`,
		"echo \u202egnp.exe":                          `echo \u202egnp.exe`,
		"a\u200bb":                                    `a\u200bb`,
		"csi \u009b2J":                                `csi \u009b2J`,
		"bad \xff byte":                               `bad \xff byte`,
		"forged \\x1b and \x1b":                       `forged \\x1b and \x1b`,
		"line1\n\x07line2":                            "line1\n\\aline2",
	} {
		got, esc := Visible(in)
		if got != want || !esc {
			t.Errorf("Visible(%q) = %q, %v; want %q, true", in, got, esc, want)
		}
		if strings.ContainsAny(got, "\x1b\r\b\u202e\u009b") {
			t.Errorf("Visible(%q) kept a control character: %q", in, got)
		}
	}
	for _, plain := range []string{"ls -la | grep 'x\\ty'", "for f in *; do\n\techo \"$f\"\ndone", "echo héllo 日本"} {
		if got, esc := Visible(plain); got != plain || esc {
			t.Errorf("Visible(%q) = %q, %v; want it unchanged", plain, got, esc)
		}
	}
}

// TestBashConfirmShowsControl: the y/N question shows the command the shell
// would run, not what its escapes would draw.
func TestBashConfirmShowsControl(t *testing.T) {
	var out bytes.Buffer
	c, err := New(engine, NewPlainReader(strings.NewReader("n\n"), &out, false), &out, Options{
		RunBash: func(context.Context, string) string { t.Error("a declined command ran"); return "" },
	})
	if err != nil {
		t.Fatal(err)
	}
	call := chat.ToolCall{Type: "function", Function: chat.FunctionCall{Name: "bash",
		Arguments: `{"command":"rm -rf ~/important \u001b[2K\u001b[1Gecho hello\nls"}`}}
	c.runTool(context.Background(), call)
	got := out.String()
	want := "run: rm -rf ~/important \\x1b[2K\\x1b[1Gecho hello\n     ls\n(the command contains control characters"
	if !strings.HasPrefix(got, want) || strings.Contains(got, "\x1b") {
		t.Errorf("confirmation %q, want it to start %q", got, want)
	}
}

func TestCapBuffer(t *testing.T) {
	b := &capBuffer{max: 10}
	chunk := bytes.Repeat([]byte("é"), 1<<19) // 1 MiB
	for i := 0; i < 1024; i++ {
		if n, err := b.Write(chunk); n != len(chunk) || err != nil {
			t.Fatal(n, err)
		}
	}
	if len(b.buf) != 10 || cap(b.buf) > 64 {
		t.Errorf("kept %d bytes (capacity %d) of 1 GiB", len(b.buf), cap(b.buf))
	}
	if got, want := b.String(), "ééééé\n[output truncated: 1073741814 more bytes]\n"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	b = &capBuffer{max: 9} // cuts a two-byte character in half
	b.Write(chunk[:100])
	if got, want := b.String(), "éééé\n[output truncated: 92 more bytes]\n"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}

// TestExecBashBounded: a command printing 200 MB is read with bounded memory
// and gives the model the first 16 KiB.
func TestExecBashBounded(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got := execBash(context.Background(), "head -c 200000000 /dev/zero | tr '\\0' a; exit 3", os.Environ())
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("reading the output allocated %d bytes", alloc)
	}
	want := strings.Repeat("a", maxToolOutput) + "\n[output truncated: 199983616 more bytes]\n[exit status 3]\n"
	if got != want {
		t.Errorf("got %d bytes ending %q", len(got), got[max(0, len(got)-80):])
	}
}
