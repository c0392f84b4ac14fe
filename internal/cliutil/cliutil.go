// Package cliutil holds what every fmoe command shares: exit codes, usage-error handling,
// signal handling and where progress goes.
package cliutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// Exit codes: 0 success, 1 failure (including a failed check), 2 usage error.
const (
	ExitFailure = 1
	ExitUsage   = 2
)

// UsageError marks an error as the user's invocation being wrong (exit 2).
func UsageError(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), ExitUsage)
}

// SignalContext is cancelled on Ctrl-C or SIGTERM, so long work stops and cleans up.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// ProgressWriter is stderr when it is a terminal (or forced), else nil: logs and CI output
// stay free of carriage-return noise.
func ProgressWriter(quiet bool) io.Writer {
	if quiet {
		return nil
	}
	if term.IsTerminal(int(os.Stderr.Fd())) || os.Getenv("FMOE_PROGRESS") == "1" {
		return os.Stderr
	}
	return nil
}

// Run runs app with the process arguments and exits with the right code. Errors go to stderr.
func Run(app *cli.App) {
	os.Exit(RunArgs(app, os.Args, os.Stdout, os.Stderr))
}

// RunArgs runs app (Prepared) with args, results to stdout and errors to stderr, and returns
// the exit status.
func RunArgs(app *cli.App, args []string, stdout, stderr io.Writer) int {
	Prepare(app)
	app.Writer, app.ErrWriter = stdout, stderr
	return Status(app.Run(args), app.Name, stderr)
}

// Status is the exit status for an error app.Run returned, whose message it writes to w.
func Status(err error, name string, w io.Writer) int {
	if err == nil {
		return 0
	}
	code := ExitFailure
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		code = ec.ExitCode()
		if code == helpTopicExit {
			code = ExitUsage
		}
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(w, "%s: %s\n", name, msg)
	}
	return code
}
