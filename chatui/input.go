package chatui

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// LineReader reads the user's lines.
type LineReader interface {
	// ReadLine shows prompt and returns the next line without its newline;
	// io.EOF ends the chat.
	ReadLine(prompt string) (string, error)
}

// plainReader reads lines from a stream (tests, pipes), writing the prompt
// and, with echo, the line read to out, so that a transcript of piped input
// reads as a conversation.
type plainReader struct {
	sc   *bufio.Scanner
	out  io.Writer
	echo bool
}

// NewPlainReader reads lines from r, writing prompts to out, and the lines
// themselves when echo is set (input that no terminal shows as it is typed).
func NewPlainReader(r io.Reader, out io.Writer, echo bool) LineReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	return &plainReader{sc: sc, out: out, echo: echo}
}

func (p *plainReader) ReadLine(prompt string) (string, error) {
	fmt.Fprint(p.out, prompt)
	if !p.sc.Scan() {
		if err := p.sc.Err(); err != nil {
			return "", err
		}
		return "", io.EOF
	}
	if p.echo {
		fmt.Fprintln(p.out, p.sc.Text())
	}
	return p.sc.Text(), nil
}

// termReader edits lines with history (golang.org/x/term), putting the
// terminal in raw mode only while a line is read, so Ctrl-C interrupts a
// generation as a signal.
type termReader struct {
	fd int
	t  *term.Terminal
}

// NewTerminalReader returns a line editor over stdin when stdin and stdout
// are terminals, and false otherwise.
func NewTerminalReader() (LineReader, bool) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) || !term.IsTerminal(int(os.Stdout.Fd())) {
		return nil, false
	}
	rw := struct {
		io.Reader
		io.Writer
	}{os.Stdin, os.Stdout}
	return &termReader{fd: fd, t: term.NewTerminal(rw, "")}, true
}

func (r *termReader) ReadLine(prompt string) (string, error) {
	old, err := term.MakeRaw(r.fd)
	if err != nil {
		return "", err
	}
	defer term.Restore(r.fd, old)
	if w, _, err := term.GetSize(r.fd); err == nil {
		r.t.SetSize(w, 0)
	}
	r.t.SetPrompt(prompt)
	line, err := r.t.ReadLine()
	if errors.Is(err, io.EOF) && line != "" {
		err = nil
	}
	return line, err
}
