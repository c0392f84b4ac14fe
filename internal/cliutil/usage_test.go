package cliutil

import (
	"errors"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func testApp() *cli.App {
	return &cli.App{Name: "tool", Commands: []*cli.Command{{
		Name:  "do",
		Flags: []cli.Flag{&cli.StringFlag{Name: "in", Required: true}, &cli.IntFlag{Name: "n"}},
		Action: func(c *cli.Context) error {
			switch c.Int("n") {
			case 1:
				return errors.New("disk on fire")
			case 2:
				return UsageError("--n 2: want anything else")
			}
			return nil
		},
	}}}
}

// TestUsageErrors: every kind of usage error exits 2 with one line on
// stderr and nothing on stdout; a failure exits 1.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"do", "--in", "x"}, 0, ""},
		{[]string{"do", "--in", "x", "--n", "1"}, 1, "tool: disk on fire\n"},
		{[]string{"do", "--in", "x", "--n", "2"}, 2, "tool: --n 2: want anything else\n"},
		{[]string{"do", "--in", "x", "--n", "two"}, 2, "tool: invalid value \"two\" for flag -n: parse error (see tool do --help)\n"},
		{[]string{"do", "--in", "x", "--bogus"}, 2, "tool: flag provided but not defined: -bogus (see tool do --help)\n"},
		{[]string{"do"}, 2, "tool: --in is required (see tool do --help)\n"},
		{[]string{"do", "--in", "x", "extra", "--n", "1"}, 2, "unexpected argument \"extra --n 1\""},
		{[]string{"bogus"}, 2, "tool: unknown command \"bogus\" (see tool --help)\n"},
		{[]string{"--bogus"}, 2, "tool: flag provided but not defined: -bogus (see tool --help)\n"},
		{[]string{"help", "bogus"}, 2, "No help topic"},
	} {
		var out, errOut strings.Builder
		code := RunArgs(testApp(), append([]string{"tool"}, tc.args...), &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.msg) || tc.msg == "" && errOut.Len() > 0 {
			t.Errorf("%q: exit %d, stderr %q; want %d, %q", tc.args, code, errOut.String(), tc.code, tc.msg)
		}
		if tc.code == 2 && out.Len() > 0 {
			t.Errorf("%q: a usage error printed %q to stdout", tc.args, out.String())
		}
	}
	var out strings.Builder
	RunArgs(testApp(), []string{"tool", "do", "--help"}, &out, &out)
	if !strings.Contains(out.String(), "Exit status: 0 success, 1 failure, 2 usage error") || !strings.Contains(out.String(), "(required)") {
		t.Errorf("help lacks the exit statuses or a required mark:\n%s", out.String())
	}
}

func TestOneOf(t *testing.T) {
	if OneOf("bits", 4, 2, 4) != nil {
		t.Error("4 of 2, 4 refused")
	}
	err := OneOf("bits", 3, 2, 4)
	var ec cli.ExitCoder
	if !errors.As(err, &ec) || ec.ExitCode() != ExitUsage || err.Error() != "--bits 3: want 2, 4" {
		t.Errorf("OneOf(3 of 2, 4) = %v", err)
	}
}

// TestOneDefault: a default stated in words at the end of a flag's usage is
// said once in help, not followed by urfave/cli's zero value; other usages
// and flags with their own default text are left alone.
func TestOneDefault(t *testing.T) {
	app := &cli.App{Name: "tool", Commands: []*cli.Command{{
		Name: "do",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "threads", Usage: "CPU threads (default: all cores)"},
			&cli.IntFlag{Name: "bits", Usage: "expert bits (default 4, or the source's own)"},
			&cli.StringFlag{Name: "load", Usage: "trace FILE (default: evenly (by number))"},
			&cli.IntFlag{Name: "layers", Usage: "layers (default: all)", DefaultText: "every one"},
			&cli.IntFlag{Name: "seed", Value: 7, Usage: "seed; 0 (default) is random"},
		},
		Action: func(*cli.Context) error { return nil },
	}}}
	var out, errw strings.Builder
	if code := RunArgs(app, []string{"tool", "do", "--help"}, &out, &errw); code != 0 {
		t.Fatalf("--help: exit %d: %s", code, errw.String())
	}
	help := out.String()
	for _, want := range []string{"CPU threads (default: all cores)\n", "expert bits (default: 4, or the source's own)\n",
		"trace FILE (default: evenly (by number))\n", "layers (default: all) (default: every one)\n", "seed; 0 (default) is random (default: 7)\n"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "(default: 0)") {
		t.Errorf("help still adds a zero default:\n%s", help)
	}
}
