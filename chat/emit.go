package chat

import "strings"

// textEmitter collects a parser's events and emits content and reasoning
// text. Whitespace that separates sections (after <think>, around </think>,
// between tool calls) is formatting, not text, and is dropped: each section
// is trimmed at both ends.
type textEmitter struct {
	events     []Event
	secStarted bool   // non-space text already emitted in this section
	secPending string // trailing spaces held until more text follows
	sawContent bool   // <think> is only honoured before any answer text
}

func (e *textEmitter) take() []Event {
	ev := e.events
	e.events = nil
	return ev
}

// text emits section text of the given kind, trimming the section's
// leading and trailing spaces.
func (e *textEmitter) text(kind EventKind, s string) {
	if !e.secStarted {
		s = strings.TrimLeft(s, spaces)
		if s == "" {
			return
		}
		e.secStarted = true
	}
	body := strings.TrimRight(s, spaces)
	if body == "" {
		e.secPending += s
		return
	}
	if kind == EventContent {
		e.sawContent = true
	}
	e.pushText(kind, e.secPending+body, false, 0)
	e.secPending = s[len(body):]
}

func (e *textEmitter) endSection() {
	e.secStarted = false
	e.secPending = ""
}

func (e *textEmitter) pushText(kind EventKind, s string, unparsed bool, index int) {
	if n := len(e.events); n > 0 && !unparsed {
		if last := &e.events[n-1]; last.Kind == kind && !last.Unparsed {
			last.Text += s
			return
		}
	}
	e.events = append(e.events, Event{Kind: kind, Text: s, Unparsed: unparsed, Index: index})
}
