// Package chatui is the interactive terminal chat of fmoe-run: streamed
// replies, reasoning shown dimmed or hidden, tool calls (a built-in bash tool
// that asks before it runs anything, and tools from a file whose results the
// user types), and one model session kept across turns so each turn only
// feeds its new tokens.
package chatui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/fmoe/fmoe/chat"
	"github.com/fmoe/fmoe/convo"
	"github.com/fmoe/fmoe/runtime/model"
)

// Options configure a Chat.
type Options struct {
	System        string
	Tools         []chat.Tool // offered besides the built-in bash tool
	NoThink       bool        // render the template with thinking off
	HideReasoning bool
	NoBash        bool // do not offer the built-in bash tool
	Color         bool // dim reasoning with ANSI escapes
	MaxTokens     int  // per reply (0: 1024)
	Sampler       model.Sampler
	// MaxToolRounds bounds the replies to tool results within one turn (0: 8).
	MaxToolRounds int
	// RunBash runs an approved command; nil runs it with bash -c.
	RunBash func(ctx context.Context, command string) string
	// TurnContext derives the context of one turn (the command cancels it
	// on Ctrl-C); nil uses context.WithCancel.
	TurnContext func(context.Context) (context.Context, context.CancelFunc)
	// Warn is where a malformed tool call is reported (Printer.Warn); nil
	// is silent.
	Warn io.Writer
}

// BashTool is the built-in tool's declaration (the shape the tiny model was
// trained with).
var BashTool = chat.Tool{Type: "function", Function: chat.ToolFunction{
	Name:        "bash",
	Description: "Run a shell command",
	Parameters:  json.RawMessage(`{"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}`),
}}

// Chat is one conversation.
type Chat struct {
	e     *convo.Engine
	o     Options
	in    LineReader
	out   io.Writer
	tools []chat.Tool
	msgs  []chat.Message
	// synced: the session holds exactly the rendered conversation so far
	// (minus the last reply's end-of-turn token), so a turn appends to it.
	synced bool
	close  string // what ends an assistant turn in the template ("<|im_end|>\n")
	stats  stats
}

type stats struct {
	turns, generated, fed, reused int
	last                          *convo.Result
}

// New starts a chat on e, reading from in and writing to out.
func New(e *convo.Engine, in LineReader, out io.Writer, o Options) (*Chat, error) {
	if o.MaxTokens == 0 {
		o.MaxTokens = 1024
	}
	if o.MaxToolRounds == 0 {
		o.MaxToolRounds = 8
	}
	if o.TurnContext == nil {
		o.TurnContext = context.WithCancel
	}
	c := &Chat{e: e, o: o, in: in, out: out, tools: append([]chat.Tool(nil), o.Tools...)}
	if c.tool("bash") == nil && !o.NoBash {
		c.tools = append(c.tools, BashTool)
	}
	const mark = "\x00reply\x00"
	s, err := e.Template.Render([]chat.Message{{Role: "user", Content: "u"}, {Role: "assistant", Content: mark}}, nil, chat.RenderOptions{})
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	i := strings.LastIndex(s, mark)
	if i < 0 {
		return nil, errors.New("chat template: cannot find how an assistant turn ends")
	}
	c.close = s[i+len(mark):]
	return c, c.Reset()
}

func (c *Chat) tool(name string) *chat.Tool {
	for i := range c.tools {
		if c.tools[i].Function.Name == name {
			return &c.tools[i]
		}
	}
	return nil
}

// Reset forgets the conversation (keeping the system message) and starts
// the session's statistics afresh.
func (c *Chat) Reset() error {
	c.msgs = c.msgs[:0]
	c.stats = stats{}
	if c.o.System != "" {
		c.msgs = append(c.msgs, chat.Message{Role: "system", Content: c.o.System})
	}
	c.synced = false
	return c.e.Reset()
}

const help = `/reset  forget the conversation   /system TEXT  set the system message (and reset)
/stats  session and speed          /exit  quit (also Ctrl-D)`

// Run reads and answers lines until /exit or the end of input.
func (c *Chat) Run(ctx context.Context) error {
	fmt.Fprintf(c.out, "fmoe chat: %s (K=%d). /help for commands.\n", c.e.Dir, c.e.Model.K)
	interrupted := false
	for {
		line, err := c.in.ReadLine("> ")
		if errors.Is(err, ErrInterrupt) {
			// A second Ctrl-C in a row quits; one alone only says how.
			if interrupted {
				return nil
			}
			interrupted = true
			fmt.Fprintln(c.out, "(Ctrl-C again or Ctrl-D quits; /help for commands)")
			continue
		}
		interrupted = false
		if errors.Is(err, io.EOF) {
			fmt.Fprintln(c.out)
			return nil
		}
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		line = strings.TrimSpace(line)
		switch cmd, arg, _ := strings.Cut(line, " "); {
		case line == "":
		case cmd == "/exit" || cmd == "/quit":
			return nil
		case cmd == "/help":
			fmt.Fprintln(c.out, help)
		case cmd == "/reset":
			if err := c.Reset(); err != nil {
				return err
			}
			fmt.Fprintln(c.out, "(conversation cleared)")
		case cmd == "/system":
			c.o.System = strings.TrimSpace(arg)
			if err := c.Reset(); err != nil {
				return err
			}
			fmt.Fprintln(c.out, "(system message set; conversation cleared)")
		case cmd == "/stats":
			c.printStats()
		case strings.HasPrefix(cmd, "/"):
			fmt.Fprintf(c.out, "unknown command %s\n%s\n", cmd, help)
		default:
			if err := c.Turn(ctx, line); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fmt.Fprintf(c.out, "error: %v\n", err)
			}
		}
	}
}

func (c *Chat) printStats() {
	fmt.Fprintf(c.out, "session: %d tokens of %d; %d turns, %d tokens generated; %d prompt tokens fed, %d reused\n",
		len(c.e.History()), c.e.MaxContext(), c.stats.turns, c.stats.generated, c.stats.fed, c.stats.reused)
	if r := c.stats.last; r != nil {
		fed := r.PromptTokens - r.ReusedTokens
		fmt.Fprintf(c.out, "last reply: %d new prompt tokens in %s (%s), %d generated in %s (%s)\n",
			fed, r.PrefillTime.Round(time.Millisecond), rate(fed, r.PrefillTime),
			len(r.IDs), r.GenerateTime.Round(time.Millisecond), rate(len(r.IDs), r.GenerateTime))
	}
}

func rate(n int, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f tok/s", float64(n)/d.Seconds())
}

// runBash runs a command with bash -c, returning its output and exit status.
func runBash(ctx context.Context, command string) string {
	return execBash(ctx, command, os.Environ())
}
