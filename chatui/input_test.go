package chatui

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestTermReaderCtrlC: Ctrl-C at the prompt is ErrInterrupt and drops the
// line typed so far; Ctrl-D on an empty line is the end of input.
func TestTermReaderCtrlC(t *testing.T) {
	r := newTermReader(strings.NewReader("abc\x03def\r\x03\x03ghi\r\x04"), io.Discard, -1)
	for i, want := range []struct {
		line string
		err  error
	}{{"", ErrInterrupt}, {"def", nil}, {"", ErrInterrupt}, {"", ErrInterrupt}, {"ghi", nil}, {"", io.EOF}} {
		line, err := r.ReadLine("> ")
		if line != want.line || !errors.Is(err, want.err) {
			t.Errorf("read %d: %q, %v; want %q, %v", i, line, err, want.line, want.err)
		}
	}
}

// TestChatCtrlC: one Ctrl-C at the prompt says how to quit, a second in a
// row quits; /stats starts afresh after /reset.
func TestChatCtrlC(t *testing.T) {
	var out bytes.Buffer
	in := newTermReader(strings.NewReader("\x03Count from 1 to 3.\r/reset\r/stats\r\x03\x03never read\r"), io.Discard, -1)
	c, err := New(engine, in, &out, Options{NoBash: true})
	if err != nil {
		t.Fatal(err)
	}
	got := run(t, c)
	t.Log(got)
	if n := strings.Count(got, "(Ctrl-C again or Ctrl-D quits"); n != 2 {
		t.Errorf("%d hints, want 2", n)
	}
	if !strings.Contains(got, "session: 0 tokens of 32768; 0 turns, 0 tokens generated; 0 prompt tokens fed, 0 reused") {
		t.Error("/stats after /reset does not start afresh")
	}
	if strings.Contains(got, "never read") {
		t.Error("the chat went on after a second Ctrl-C")
	}
}
