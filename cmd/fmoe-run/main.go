// Command fmoe-run runs a packed Mixture-of-Experts model: it streams the routed experts of each
// layer from disk and generates text, and tokenises for inspection.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/fmoe/fmoe/internal/cliutil"
)

func main() {
	app := &cli.App{
		Name:  "fmoe-run",
		Usage: "run a packed MoE model (made by fmoe-pack) streaming its experts from disk",
		Description: `Example:
   fmoe-pack convert --in models/fmoe-tiny-chat/mlx-4bit --out build/tiny
   fmoe-run tokenize --model build/tiny --text "Hello world"`,
		Commands: commands(),
	}
	stop, err := goTrace(os.Getenv("FMOE_GO_TRACE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fmoe-run:", err)
		os.Exit(cliutil.ExitUsage)
	}
	code := cliutil.RunArgs(app, os.Args, os.Stdout, os.Stderr)
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, "fmoe-run:", err)
		code = max(code, cliutil.ExitFailure)
	}
	os.Exit(code)
}

// commands is extended by the files that add subcommands.
func commands() []*cli.Command {
	return []*cli.Command{generateCmd(), tokenizeCmd(), evalCmd(), serveCmd(), chatCmd()}
}
