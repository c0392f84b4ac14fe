package cliutil

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// helpTopicExit is urfave/cli's status for "help NAME" with an unknown NAME.
const helpTopicExit = 3

// ExitStatusHelp ends every command's --help.
const ExitStatusHelp = "Exit status: 0 success, 1 failure, 2 usage error (an unknown command or flag, a missing\nor bad value, a stray argument)."

// Prepare makes every usage error of app exit 2 with one line on stderr instead of a help
// page: an unknown command or flag, a flag value that does not parse, a missing required flag,
// and arguments a command does not take. It also ends each help text with the exit statuses.
// Apply it before app.Run (RunArgs does).
func Prepare(app *cli.App) {
	app.ExitErrHandler = func(*cli.Context, error) {} // errors come back to RunArgs
	app.OnUsageError = usageError(app.Name)
	if app.Action == nil && len(app.Commands) > 0 {
		app.Action = func(c *cli.Context) error {
			if c.NArg() > 0 {
				return UsageError("unknown command %q (see %s --help)", c.Args().First(), app.Name)
			}
			return cli.ShowAppHelp(c)
		}
	}
	app.Description = withExitStatus(app.Description)
	for _, cmd := range app.Commands {
		prepareCommand(cmd, app.Name+" "+cmd.Name)
	}
}

func prepareCommand(cmd *cli.Command, path string) {
	if cmd.OnUsageError != nil {
		return // prepared already (Prepare ran twice on one app)
	}
	cmd.OnUsageError = usageError(path)
	cmd.Description = withExitStatus(cmd.Description)
	for _, f := range cmd.Flags {
		oneDefault(f)
	}
	for _, sub := range cmd.Subcommands {
		prepareCommand(sub, path+" "+sub.Name)
	}
	if cmd.Action == nil || len(cmd.Subcommands) > 0 {
		return
	}
	// urfave/cli answers a missing required flag with the whole help page on stdout; the
	// check moves into the action, to say it in a line.
	var required []string
	for _, f := range cmd.Flags {
		if sf, ok := f.(*cli.StringFlag); ok && sf.Required {
			sf.Required = false
			sf.Usage += " (required)"
			required = append(required, sf.Name)
		}
	}
	action, takesArgs := cmd.Action, cmd.ArgsUsage != ""
	cmd.Action = func(c *cli.Context) error {
		for _, name := range required {
			if !c.IsSet(name) {
				return UsageError("--%s is required (see %s --help)", name, path)
			}
		}
		if !takesArgs && c.NArg() > 0 {
			return UsageError("unexpected argument %q: %s takes flags only (quote a value that has spaces; flags go before any argument)", strings.Join(c.Args().Slice(), " "), path)
		}
		return action(c)
	}
}

func usageError(path string) cli.OnUsageErrorFunc {
	return func(_ *cli.Context, err error, _ bool) error {
		return UsageError("%v (see %s --help)", err, path)
	}
}

func withExitStatus(desc string) string {
	if strings.Contains(desc, "Exit status") {
		return desc
	}
	if desc != "" {
		desc += "\n\n"
	}
	return desc + ExitStatusHelp
}

// OneOf is a usage error unless v is one of allowed.
func OneOf[T comparable](flag string, v T, allowed ...T) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	want := make([]string, len(allowed))
	for i, a := range allowed {
		want[i] = fmt.Sprint(a)
	}
	return UsageError("--%s %v: want %s", flag, v, strings.Join(want, ", "))
}

// NotNegative is a usage error for each named int flag of c below 0.
func NotNegative(c *cli.Context, flags ...string) error {
	for _, f := range flags {
		if v := c.Int(f); v < 0 {
			return UsageError("--%s %d: want 0 or more", f, v)
		}
	}
	return nil
}

// oneDefault moves a default the usage states in words ("(default: all cores)" at its end) to
// the flag's default text, so help says it once instead of adding urfave/cli's "(default: 0)"
// (the zero value that stands for it).
func oneDefault(f cli.Flag) {
	var usage, text *string
	switch f := f.(type) {
	case *cli.IntFlag:
		usage, text = &f.Usage, &f.DefaultText
	case *cli.Int64Flag:
		usage, text = &f.Usage, &f.DefaultText
	case *cli.Uint64Flag:
		usage, text = &f.Usage, &f.DefaultText
	case *cli.Float64Flag:
		usage, text = &f.Usage, &f.DefaultText
	case *cli.StringFlag:
		usage, text = &f.Usage, &f.DefaultText
	default:
		return
	}
	u := strings.TrimSpace(*usage)
	i := strings.LastIndex(u, "(default")
	if *text != "" || i < 0 || !strings.HasSuffix(u, ")") || strings.Count(u[i:], "(") != strings.Count(u[i:], ")") {
		return
	}
	d := strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(u[i+len("(default"):len(u)-1], ":"), " "))
	if d == "" {
		return
	}
	*usage, *text = strings.TrimSpace(u[:i]), d
}

// EnvChoice reads a two-way environment switch whose default is on (an
// experiment's old way kept to measure against): unset or on is true, off
// false, anything else a usage error naming the variable, so that a
// misspelt value is not silently run as the default.
func EnvChoice(name, on, off string) (bool, error) {
	switch v := os.Getenv(name); v {
	case "", on:
		return true, nil
	case off:
		return false, nil
	default:
		return false, UsageError("%s=%q: want %s (the default) or %s", name, v, on, off)
	}
}
