package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/fmoe/fmoe/chat"
	"github.com/fmoe/fmoe/chatui"
	"github.com/fmoe/fmoe/tokenizer"
)

// replyWriter prints generated tokens: ids (--ids), the raw text (--raw,
// --no-template), or a chat reply as the chat shows it.
type replyWriter struct {
	out    io.Writer
	stop   []int
	dec    *tokenizer.Decoder // nil: print ids
	parser *chat.Parser       // nil: print the text raw
	pr     *chatui.Printer
	calls  int
}

// newReplyWriter prints a chat reply when parse is set, with tools typing
// the calls' arguments, format the model's chat markup and prompt saying
// whether the reply starts inside <think>.
func newReplyWriter(out io.Writer, tok *tokenizer.Tokenizer, stop []int, parse bool, tools []chat.Tool, format *chat.Format, prompt string, showReasoning bool) *replyWriter {
	w := &replyWriter{out: out, stop: stop}
	if tok == nil {
		return w
	}
	w.dec = tok.NewDecoder()
	if parse {
		w.parser = chat.NewParser(chat.ParserOptions{Tools: tools, StartInReasoning: chat.PromptEndsInReasoning(prompt), Format: format})
		w.pr = &chatui.Printer{Out: out, HideReasoning: !showReasoning, Color: colorOut(out), ShowCalls: true, Warn: os.Stderr}
	}
	return w
}

// colorOut reports whether out is a terminal that wants colors.
func colorOut(out io.Writer) bool {
	f, ok := out.(*os.File)
	return ok && os.Getenv("NO_COLOR") == "" && term.IsTerminal(int(f.Fd()))
}

func (w *replyWriter) token(id int) {
	switch {
	case w.dec == nil:
		fmt.Fprintf(w.out, "%d ", id)
	case containsID(w.stop, id):
	case w.parser == nil:
		io.WriteString(w.out, w.dec.Add(id))
	default:
		w.print(w.parser.Feed(w.dec.Add(id)))
	}
}

// close flushes what is held back and ends the output with a newline.
func (w *replyWriter) close() {
	switch {
	case w.dec == nil:
		fmt.Fprintln(w.out)
	case w.parser == nil:
		fmt.Fprintln(w.out, w.dec.Flush())
	default:
		w.print(w.parser.Feed(w.dec.Flush()))
		w.print(w.parser.Close())
		w.pr.End()
	}
}

func (w *replyWriter) print(evs []chat.Event) {
	for _, ev := range evs {
		if ev.Kind == chat.EventToolCall {
			w.calls++
		}
	}
	w.pr.Print(evs)
}
