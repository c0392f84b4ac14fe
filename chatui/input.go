package chatui

import (
	"bufio"
	"bytes"
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

// ErrInterrupt is what a LineReader returns when the user pressed Ctrl-C
// at the prompt (the line typed so far is dropped).
var ErrInterrupt = errors.New("interrupted")

// termReader edits lines with history (golang.org/x/term), putting the
// terminal in raw mode only while a line is read, so Ctrl-C interrupts a
// generation as a signal. At the prompt Ctrl-C arrives as a byte, which
// x/term would treat as end of input; ctrlC turns it into ErrInterrupt.
type termReader struct {
	fd int // -1: not a terminal (tests)
	t  *term.Terminal
	cc *ctrlCReader
}

// NewTerminalReader returns a line editor over stdin when stdin and stdout
// are terminals, and false otherwise.
func NewTerminalReader() (LineReader, bool) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) || !term.IsTerminal(int(os.Stdout.Fd())) {
		return nil, false
	}
	return newTermReader(os.Stdin, os.Stdout, fd), true
}

func newTermReader(in io.Reader, out io.Writer, fd int) *termReader {
	cc := &ctrlCReader{r: in}
	rw := struct {
		io.Reader
		io.Writer
	}{cc, out}
	t := term.NewTerminal(rw, "")
	t.History = skipEmpty{t.History}
	return &termReader{fd: fd, t: t, cc: cc}
}

func (r *termReader) ReadLine(prompt string) (string, error) {
	if r.fd >= 0 {
		old, err := term.MakeRaw(r.fd)
		if err != nil {
			return "", err
		}
		defer term.Restore(r.fd, old)
		if w, _, err := term.GetSize(r.fd); err == nil {
			r.t.SetSize(w, 0)
		}
	}
	r.t.SetPrompt(prompt)
	line, err := r.t.ReadLine()
	if r.cc.hit {
		r.cc.hit = false
		return "", ErrInterrupt
	}
	if errors.Is(err, io.EOF) && line != "" {
		err = nil
	}
	return line, err
}

// ctrlCReader hands the terminal each Ctrl-C as a chunk of its own, rewritten
// as "clear the line, Enter", and notes that it did: the terminal then
// returns an empty line for it, with its state reset (x/term would return
// io.EOF and keep the line typed so far), and ReadLine knows that line was
// Ctrl-C because nothing else was in the chunk.
type ctrlCReader struct {
	r   io.Reader
	buf []byte
	hit bool
}

// clearLine is Ctrl-A (start of line), Ctrl-K (delete to the end), Enter.
const clearLine = "\x01\x0b\r"

func (c *ctrlCReader) Read(p []byte) (int, error) {
	if len(c.buf) == 0 {
		n, err := c.r.Read(p)
		if n == 0 {
			return 0, err
		}
		c.buf = append(c.buf[:0], p[:n]...)
	}
	if c.buf[0] == 3 && len(p) >= len(clearLine) {
		c.buf = c.buf[1:]
		c.hit = true
		return copy(p, clearLine), nil
	}
	i := bytes.IndexByte(c.buf[1:], 3) + 1
	if i == 0 {
		i = len(c.buf)
	}
	n := copy(p, c.buf[:i])
	c.buf = c.buf[n:]
	return n, nil
}

// skipEmpty keeps empty lines out of the history.
type skipEmpty struct{ term.History }

func (h skipEmpty) Add(s string) {
	if s != "" {
		h.History.Add(s)
	}
}
