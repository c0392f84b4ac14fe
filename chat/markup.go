package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// markup is a tool-call syntax made of sections of calls where each call
// ends with a tag of its own and is parsed whole once that tag arrives
// (GLM-4.5, DeepSeek, Kimi-K2). Its calls stream as one argument fragment
// each; Qwen3.5's markup, whose parameters stream one by one, has its own
// parser (parser.go).
type markup struct {
	name      string // the format's name, for Event.Problem
	open      string // opens a section of calls in the answer or the reasoning
	callBegin string // opens each call of a section; "" when a section is one call
	callEnd   string // ends a call
	close     string // ends a section; "" when a section is one call
	think     bool   // the model writes <think>…</think> reasoning
	// parseCall reads one call's body, the text between callBegin (or
	// open) and callEnd.
	parseCall func(body string, schemas toolSchemas) (parsedCall, error)
}

// parsedCall is a call read from its markup. id is empty when the markup
// names none, and the parser makes one.
type parsedCall struct{ id, name, args string }

type markupState uint8

const (
	mText    markupState = iota // content or reasoning
	mSection                    // between the calls of a section
	mCall                       // inside a call, until its end tag
	mClosed
)

type markupParser struct {
	mk        *markup
	opts      ParserOptions
	schemas   toolSchemas
	st        markupState
	reasoning bool
	buf       string
	raw       strings.Builder // markup since the section or the last call, returned if it fails
	nextIndex int
	inSection int // calls emitted in the current section
	textEmitter
}

func (mk *markup) parser(opts ParserOptions) machine {
	return &markupParser{mk: mk, opts: opts, schemas: newToolSchemas(opts.Tools),
		reasoning: mk.think && opts.StartInReasoning}
}

func (p *markupParser) Feed(chunk string) []Event {
	if p.st == mClosed {
		return nil
	}
	p.buf += chunk
	p.run(false)
	return p.take()
}

func (p *markupParser) Close() []Event {
	if p.st == mClosed {
		return nil
	}
	p.run(true)
	p.st = mClosed
	return p.take()
}

func (p *markupParser) run(final bool) {
	for {
		var progressed bool
		switch p.st {
		case mText:
			progressed = p.stepText(final)
		case mSection:
			progressed = p.stepSection(final)
		case mCall:
			progressed = p.stepCall(final)
		}
		if !progressed {
			return
		}
	}
}

func (p *markupParser) consume(n int) string {
	s := p.buf[:n]
	p.buf = p.buf[n:]
	return s
}

func (p *markupParser) kind() EventKind {
	if p.reasoning {
		return EventReasoning
	}
	return EventContent
}

// textTags are the tags that end the current text: </think> in reasoning,
// <think> before any answer text (and only after nothing but spaces), and
// a section's opening everywhere.
func (p *markupParser) findTag() (int, string, bool) {
	switch {
	case p.reasoning:
		return scanTags(p.buf, tagThinkEnd, p.mk.open)
	case p.mk.think && !p.sawContent:
		i, tag, partial := scanTags(p.buf, p.mk.open, tagThink)
		if (tag == tagThink || partial) && strings.TrimLeft(p.buf[:i], spaces) != "" {
			return scanTags(p.buf, p.mk.open)
		}
		return i, tag, partial
	}
	return scanTags(p.buf, p.mk.open)
}

func (p *markupParser) stepText(final bool) bool {
	if p.buf == "" {
		return false
	}
	i, tag, partial := p.findTag()
	switch {
	case i < 0:
		n := len(p.buf)
		if !final {
			n = completeUTF8(p.buf)
		}
		p.text(p.kind(), p.consume(n))
		return false
	case partial:
		p.text(p.kind(), p.consume(i))
		if final {
			p.text(p.kind(), p.consume(len(p.buf)))
		}
		return false
	}
	p.text(p.kind(), p.consume(i))
	p.consume(len(tag))
	p.endSection()
	switch tag {
	case tagThink:
		p.reasoning = true
	case tagThinkEnd:
		p.reasoning = false
	default: // a section of calls; it ends any reasoning
		p.reasoning = false
		p.raw.Reset()
		p.raw.WriteString(tag)
		p.inSection = 0
		p.st = mSection
		if p.mk.callBegin == "" {
			p.st = mCall
		}
	}
	return true
}

func (p *markupParser) stepSection(final bool) bool {
	n := len(p.buf) - len(strings.TrimLeft(p.buf, spaces))
	p.raw.WriteString(p.consume(n))
	switch {
	case strings.HasPrefix(p.buf, p.mk.callBegin):
		p.raw.WriteString(p.consume(len(p.mk.callBegin)))
		p.st = mCall
	case strings.HasPrefix(p.buf, p.mk.close):
		p.consume(len(p.mk.close))
		p.raw.Reset()
		p.st = mText
	case p.inSection > 0 && (final || p.buf != "" && !prefixOf(p.buf, p.mk.callBegin, p.mk.close)):
		// The section's end tag was left out after its calls: what follows
		// is text.
		p.raw.Reset()
		p.st = mText
		return p.buf != ""
	case p.buf != "" && !prefixOf(p.buf, p.mk.callBegin, p.mk.close):
		// What follows is not quoted: how much of it has arrived depends on
		// the chunking, and the events must not.
		p.abandon(false, fmt.Sprintf("expected %s or %s after %s", p.mk.callBegin, p.mk.close, p.mk.open))
	case final:
		p.abandon(true, fmt.Sprintf("the output ended inside a section of calls, before %s", p.mk.close))
	default:
		return false
	}
	return true
}

// callEnds are the tags that end a call's body: its end tag, or (when the
// model left the end tag out) the next call or the section's end.
func (p *markupParser) callEnds() []string {
	tags := []string{p.mk.callEnd}
	if p.mk.callBegin != "" {
		tags = append(tags, p.mk.callBegin, p.mk.close)
	}
	return tags
}

func (p *markupParser) stepCall(final bool) bool {
	i, tag, partial := scanTags(p.buf, p.callEnds()...)
	if i < 0 || partial {
		if !final {
			return false
		}
		// Cut off before the end tag: a body that still reads as a whole
		// call (complete JSON arguments) is one.
		body := p.consume(len(p.buf))
		p.raw.WriteString(body)
		c, err := p.mk.parseCall(body, p.schemas)
		if err != nil {
			p.abandon(true, fmt.Sprintf("the output ended before %s (%v)", p.mk.callEnd, err))
			return true
		}
		p.emit(c)
		p.st = mText
		return false
	}
	body := p.consume(i)
	p.raw.WriteString(body)
	if tag == p.mk.callEnd {
		p.raw.WriteString(p.consume(len(tag)))
	}
	c, err := p.mk.parseCall(body, p.schemas)
	if err != nil {
		p.abandon(false, err.Error())
		return true
	}
	p.emit(c)
	p.st = mSection
	if p.mk.callBegin == "" {
		p.st = mText
	}
	return true
}

// emit sends a complete call: its name, all its arguments, the call.
func (p *markupParser) emit(c parsedCall) {
	index := p.nextIndex
	p.nextIndex++
	if c.id == "" {
		c.id = p.opts.NewID()
	}
	p.events = append(p.events,
		Event{Kind: EventToolCallDelta, Delta: &ToolCallDelta{Index: index, ID: c.id, Type: "function", Function: FunctionDelta{Name: c.name}}},
		Event{Kind: EventToolCallDelta, Delta: &ToolCallDelta{Index: index, Function: FunctionDelta{Arguments: c.args}}},
		Event{Kind: EventToolCall, Index: index, Call: &ToolCall{ID: c.id, Type: "function", Function: FunctionCall{Name: c.name, Arguments: c.args}}})
	p.raw.Reset()
	p.inSection++
}

// abandon gives up on the current section: its markup so far becomes
// Unparsed content and parsing resumes as content. At the end of the
// stream the rest of the buffer belongs to it as well.
func (p *markupParser) abandon(final bool, problem string) {
	if final {
		p.raw.WriteString(p.consume(len(p.buf)))
	}
	p.endSection()
	p.events = append(p.events, Event{Kind: EventContent, Text: p.raw.String(), Unparsed: true, Index: -1,
		Problem: p.mk.name + " tool call: " + problem})
	p.sawContent = true
	p.raw.Reset()
	p.reasoning = false
	p.st = mText
}

// firstRunes shortens s for an error message.
func firstRunes(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// callName checks a function name read from markup.
func callName(s string) (string, error) {
	name := strings.TrimSpace(s)
	switch {
	case name == "":
		return "", fmt.Errorf("no function name")
	case len(name) > maxNameLen || strings.ContainsAny(name, "\r\n<>"):
		return "", fmt.Errorf("%q is not a function name", firstRunes(name, 40))
	}
	return name, nil
}

// jsonObject checks that s is one JSON object and returns it compacted; an
// empty s is the empty object.
func jsonObject(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "{}", nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		return "", fmt.Errorf("arguments are not JSON: %v", err)
	}
	if s[0] != '{' {
		return "", fmt.Errorf("arguments are %s, not a JSON object", firstRunes(s, 24))
	}
	return b.String(), nil
}
