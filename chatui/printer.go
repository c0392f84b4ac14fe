package chatui

import (
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/fmoe/fmoe/chat"
)

const (
	dim   = "\x1b[2m"
	reset = "\x1b[0m"
)

// Printer writes a streamed reply as a conversation reads: reasoning after
// "thinking:" (dimmed with Color, or hidden), the answer as text, and tool
// calls as name(arguments). The whitespace the template puts around its tags
// (the blank lines after </think> and before <tool_call>) is dropped, so no
// empty lines or stray markup reach the reader.
type Printer struct {
	Out           io.Writer
	HideReasoning bool
	Color         bool // dim reasoning with ANSI escapes
	// ShowCalls prints each tool call on a line of its own; the chat
	// leaves it off and prints calls as it runs them.
	ShowCalls bool
	// Warn, when set, is told of markup that looked like a tool call but
	// could not be read (chat.Event.Problem): the model's words are still
	// printed as text, and the warning says why no call was made.
	Warn io.Writer

	kind    chat.EventKind // the section being printed (0: none)
	started bool           // the section has printed something
	pending string         // trailing whitespace, printed only if text follows
}

// Print writes parsed events.
func (p *Printer) Print(evs []chat.Event) {
	for _, ev := range evs {
		if ev.Unparsed && ev.Problem != "" && p.Warn != nil {
			fmt.Fprintf(p.Warn, "warning: %s; it is shown as text\n", ev.Problem)
		}
		switch ev.Kind {
		case chat.EventReasoning:
			if !p.HideReasoning {
				p.text(ev.Kind, ev.Text)
			}
		case chat.EventContent:
			p.text(ev.Kind, ev.Text)
		case chat.EventToolCall:
			p.End()
			if p.ShowCalls {
				fmt.Fprintf(p.Out, "tool call: %s\n", FormatCall(*ev.Call))
			}
		}
	}
}

// End finishes the section being printed with a newline.
func (p *Printer) End() {
	if p.started {
		if p.kind == chat.EventReasoning && p.Color {
			io.WriteString(p.Out, reset)
		}
		io.WriteString(p.Out, "\n")
	}
	p.kind, p.started, p.pending = 0, false, ""
}

func (p *Printer) text(kind chat.EventKind, s string) {
	if kind != p.kind {
		p.End()
		p.kind = kind
	}
	if !p.started {
		if s = strings.TrimLeftFunc(s, unicode.IsSpace); s == "" {
			return
		}
		p.started = true
		if kind == chat.EventReasoning {
			if p.Color {
				io.WriteString(p.Out, dim)
			}
			io.WriteString(p.Out, "thinking: ")
		}
	}
	body := strings.TrimRightFunc(s, unicode.IsSpace)
	if body == "" {
		p.pending += s
		return
	}
	io.WriteString(p.Out, p.pending+body)
	p.pending = s[len(body):]
}

// FormatCall shows a tool call as name(arguments), with any character a
// terminal would act on made visible (JSON escapes most control characters,
// but not DEL, C1 controls or bidirectional overrides).
func FormatCall(call chat.ToolCall) string {
	s, _ := Visible(call.Function.Name + "(" + call.Function.Arguments + ")")
	return s
}
