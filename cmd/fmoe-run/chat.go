package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/fmoe/fmoe/chatui"
	"github.com/fmoe/fmoe/convo"
	"github.com/fmoe/fmoe/internal/cliutil"
)

func chatCmd() *cli.Command {
	return &cli.Command{
		Name:      "chat",
		Usage:     "chat with the model in the terminal",
		UsageText: "fmoe-run chat --model DIR [--system FILE] [--tools FILE] [--no-think] [--hide-reasoning] [--no-bash] [--tokens N] [--temperature T] [--top-p P] [--top-k N] [--seed S] [--k K] [--2bit] [--gpus LIST [--expert-load FILE]]",
		Description: `Replies stream as they are generated; reasoning is shown dimmed (or hidden with
--hide-reasoning). The model can call a built-in bash tool, which asks before running anything
(y/N) and returns the command's output, and the tools of an OpenAI-format JSON file (a list of
{"type":"function","function":{...}}), whose results you type (an empty line declines).
The conversation stays in the model's session, so each turn computes only its new tokens.
A call to a tool that was not offered is shown and refused (the model is told so).
Commands: /reset, /system TEXT, /stats, /help, /exit. Ctrl-C stops a reply; at the prompt,
Ctrl-D (or Ctrl-C twice) quits.`,
		Flags: append(append(modelFlags(), samplingFlags()...),
			&cli.StringFlag{Name: "system", Usage: "system message `FILE`"},
			&cli.StringFlag{Name: "tools", Usage: "OpenAI-format tools JSON `FILE`"},
			&cli.BoolFlag{Name: "no-think", Usage: "render the template with thinking disabled"},
			&cli.BoolFlag{Name: "hide-reasoning", Usage: "do not print the model's reasoning"},
			&cli.BoolFlag{Name: "no-bash", Usage: "do not offer the built-in bash tool"},
			&cli.IntFlag{Name: "tokens", Value: 1024, Usage: "maximum tokens per reply"},
		),
		Action: runChat,
	}
}

func runChat(c *cli.Context) error {
	smp, err := sampler(c)
	if err != nil {
		return err
	}
	o := chatui.Options{
		NoThink:       c.Bool("no-think"),
		HideReasoning: c.Bool("hide-reasoning"),
		NoBash:        c.Bool("no-bash"),
		MaxTokens:     c.Int("tokens"),
		Sampler:       smp,
		Warn:          os.Stderr,
		TurnContext: func(ctx context.Context) (context.Context, context.CancelFunc) {
			return signal.NotifyContext(ctx, os.Interrupt)
		},
	}
	if f := c.String("system"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return cliutil.UsageError("--system: %v", err)
		}
		o.System = string(b)
	}
	if f := c.String("tools"); f != "" {
		var err error
		if o.Tools, err = readTools(f); err != nil {
			return err
		}
	}
	in, isTerm := chatui.NewTerminalReader()
	if !isTerm {
		in = chatui.NewPlainReader(os.Stdin, os.Stdout, !term.IsTerminal(int(os.Stdin.Fd())))
	}
	o.Color = isTerm && os.Getenv("NO_COLOR") == "" && term.IsTerminal(int(os.Stdout.Fd()))
	m, done, err := openModel(c)
	if err != nil {
		return err
	}
	defer closeModel(done)
	e, err := convo.New(m, c.String("model"))
	if err != nil {
		return err
	}
	defer e.Close()
	ch, err := chatui.New(e, in, os.Stdout, o)
	if err != nil {
		return err
	}
	if err := ch.Run(context.Background()); err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	return nil
}
