// Package cliutil holds what every fmoe command shares: exit codes, signal handling and
// where progress goes.
package cliutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
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
	app.ErrWriter = os.Stderr
	app.Writer = os.Stdout
	app.ExitErrHandler = func(c *cli.Context, err error) {}
	app.OnUsageError = func(c *cli.Context, err error, isSubcommand bool) error {
		return cli.Exit(fmt.Sprintf("%s: %v (see --help)", app.Name, err), ExitUsage)
	}
	err := app.Run(os.Args)
	if err == nil {
		return
	}
	code := ExitFailure
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		code = ec.ExitCode()
		if msg := err.Error(); msg != "" {
			fmt.Fprintf(os.Stderr, "%s: %s\n", app.Name, msg)
		}
	} else {
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.Name, err)
		// urfave/cli reports missing required flags as plain errors; they are usage errors.
		if strings.HasPrefix(err.Error(), "Required flag") {
			code = ExitUsage
		}
	}
	os.Exit(code)
}
