package chat

import (
	"crypto/rand"
	"strings"
	"unicode/utf8"
)

// EventKind says what an Event carries.
type EventKind uint8

const (
	// EventContent is answer text (Event.Text).
	EventContent EventKind = iota + 1
	// EventReasoning is thinking text from inside <think>…</think> (Event.Text).
	EventReasoning
	// EventToolCallDelta is an OpenAI streaming fragment of a tool call (Event.Delta).
	EventToolCallDelta
	// EventToolCall is a complete tool call (Event.Call, Event.Index).
	EventToolCall
)

func (k EventKind) String() string {
	switch k {
	case EventContent:
		return "content"
	case EventReasoning:
		return "reasoning"
	case EventToolCallDelta:
		return "tool_call_delta"
	case EventToolCall:
		return "tool_call"
	}
	return "invalid"
}

// Event is one piece of parsed model output.
type Event struct {
	Kind  EventKind
	Text  string
	Delta *ToolCallDelta
	Call  *ToolCall
	// Index is the tool call's position in the response (EventToolCall).
	// For Unparsed content it is the index of the call whose deltas were
	// already streamed and must now be considered abandoned, or -1.
	Index int
	// Unparsed marks content that is tool-call markup which never became a
	// valid call (cut off at Close, or malformed); it is passed through
	// verbatim so that no generated text is lost.
	Unparsed bool
	// Problem says what is wrong with Unparsed markup ("arguments are not a
	// JSON object: …"), for logs and the user's warning; every format's parser says.
	Problem string
}

// ToolCallDelta is the OpenAI chat.completion.chunk tool_calls element.
// The first delta of a call carries ID, Type and Name; later ones carry
// argument fragments whose concatenation is the final Arguments.
type ToolCallDelta struct {
	Index    int           `json:"index"`
	ID       string        `json:"id,omitempty"`
	Type     string        `json:"type,omitempty"`
	Function FunctionDelta `json:"function"`
}

// FunctionDelta is the function part of a ToolCallDelta.
type FunctionDelta struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// ParserOptions configure a Parser.
type ParserOptions struct {
	// Tools supply JSON schemas that type parameter values; without a
	// schema a value stays a string.
	Tools []Tool
	// StartInReasoning is for prompts that end inside <think> (Qwen3.5 with
	// thinking on): output is reasoning until </think>. See PromptEndsInReasoning.
	StartInReasoning bool
	// NewID makes tool-call IDs; nil gives "call_" plus 24 random characters.
	NewID func() string
	// Format is the model's chat markup (Template.Format); nil is Qwen's.
	Format *Format
}

// Parser splits streamed model output into content, reasoning and tool
// calls, in the markup of its ParserOptions.Format. Feed it text as it is
// generated; it holds back only text that could still turn out to be the
// start of a tag. The events for any chunking of a text are the same as for
// the whole text at once, up to how content and reasoning text is split
// between events.
//
// Whitespace that separates sections (after <think>, around </think>,
// between tool calls) is formatting, not text, and is dropped: each content
// or reasoning section is trimmed at both ends.
type Parser struct{ m machine }

// machine is one format's parser.
type machine interface {
	Feed(chunk string) []Event
	Close() []Event
}

// NewParser returns a Parser for one generated response.
func NewParser(opts ParserOptions) *Parser {
	if opts.NewID == nil {
		opts.NewID = NewCallID
	}
	f := opts.Format
	if f == nil {
		f = FormatQwen
	}
	return &Parser{m: f.newParser(opts)}
}

// Feed consumes the next chunk of generated text.
func (p *Parser) Feed(chunk string) []Event { return p.m.Feed(chunk) }

// Close ends the stream: held-back text is flushed and an unfinished tool
// call is returned as Unparsed content. Later calls return nothing.
func (p *Parser) Close() []Event { return p.m.Close() }

// PromptEndsInReasoning reports whether a rendered prompt leaves the model
// inside an open <think> block, i.e. whether a Parser should start in reasoning.
func PromptEndsInReasoning(prompt string) bool {
	return strings.HasSuffix(strings.TrimRight(prompt, " \t\r\n"), "<think>")
}

// NewCallID returns an OpenAI-style tool-call ID.
func NewCallID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "call_" + string(b)
}

const (
	tagThink        = "<think>"
	tagThinkEnd     = "</think>"
	tagToolCall     = "<tool_call>"
	tagToolCallEnd  = "</tool_call>"
	tagFunction     = "<function="
	tagFunctionEnd  = "</function>"
	tagParameter    = "<parameter="
	tagParameterEnd = "</parameter>"
	// maxNameLen bounds how long a function or parameter name may be before
	// the markup is judged malformed, so a stray "<function=" cannot make the
	// parser hold back output forever.
	maxNameLen = 256
	spaces     = " \t\r\n"
)

type state uint8

const (
	stContent    state = iota
	stReasoning        // inside <think>
	stCallOpen         // after <tool_call>: expect <function= or a JSON object
	stFuncName         // after <function=: read NAME>
	stFuncBody         // expect <parameter=, </function> or </tool_call>
	stParamName        // after <parameter=: read NAME>
	stParamValue       // read until </parameter>, <parameter=, </function> or </tool_call>
	stAfterFunc        // after </function>: expect </tool_call> or another call
	stJSONCall         // Qwen3 style: JSON object until </tool_call>
	stClosed
)

// qwenParser reads Qwen3.5's XML tool calls (<function=NAME><parameter=…>) and Qwen3's JSON
// ones inside <tool_call>…</tool_call>, streaming each parameter as soon as it is complete.
type qwenParser struct {
	opts    ParserOptions
	schemas toolSchemas
	st      state
	buf     string
	textEmitter

	// Tool call being parsed.
	raw        strings.Builder // verbatim markup, returned if the call fails
	nextIndex  int
	callIndex  int // -1 until the call's first delta is emitted
	callID     string
	callName   string
	callArgs   strings.Builder
	paramName  string
	paramValue strings.Builder
}

func newQwenParser(opts ParserOptions) machine {
	p := &qwenParser{opts: opts, schemas: newToolSchemas(opts.Tools), callIndex: -1}
	if opts.StartInReasoning {
		p.st = stReasoning
	}
	return p
}

func (p *qwenParser) Feed(chunk string) []Event {
	if p.st == stClosed {
		return nil
	}
	p.buf += chunk
	p.run(false)
	return p.take()
}

func (p *qwenParser) Close() []Event {
	if p.st == stClosed {
		return nil
	}
	p.run(true)
	p.st = stClosed
	return p.take()
}

func (p *qwenParser) consume(n int) string {
	s := p.buf[:n]
	p.buf = p.buf[n:]
	return s
}

// run advances the state machine as far as the buffered text allows.
func (p *qwenParser) run(final bool) {
	for {
		var progressed bool
		switch p.st {
		case stContent, stReasoning:
			progressed = p.stepText(final)
		case stCallOpen:
			progressed = p.stepCallOpen(final)
		case stFuncName, stParamName:
			progressed = p.stepName(final)
		case stFuncBody:
			progressed = p.stepFuncBody(final)
		case stParamValue:
			progressed = p.stepParamValue(final)
		case stAfterFunc:
			progressed = p.stepAfterFunc(final)
		case stJSONCall:
			progressed = p.stepJSONCall(final)
		}
		if !progressed {
			return
		}
	}
}

// scanTags finds the first tag in s. partial means s ends with a proper
// prefix of a tag at index i, which more input may complete.
func scanTags(s string, tags ...string) (i int, tag string, partial bool) {
	for off := 0; ; {
		j := strings.IndexByte(s[off:], '<')
		if j < 0 {
			return -1, "", false
		}
		i = off + j
		rest := s[i:]
		for _, t := range tags {
			if strings.HasPrefix(rest, t) {
				return i, t, false
			}
		}
		for _, t := range tags {
			if len(rest) < len(t) && strings.HasPrefix(t, rest) {
				return i, "", true
			}
		}
		off = i + 1
	}
}

// prefixOf reports whether s is a proper prefix of one of the tags.
func prefixOf(s string, tags ...string) bool {
	for _, t := range tags {
		if len(s) < len(t) && strings.HasPrefix(t, s) {
			return true
		}
	}
	return false
}

// completeUTF8 is the length of the longest prefix of s that does not end
// in the middle of a UTF-8 sequence, so byte-level tokens never produce
// half characters in events.
func completeUTF8(s string) int {
	for back := 1; back <= utf8.UTFMax-1 && back <= len(s); back++ {
		c := s[len(s)-back]
		if c < utf8.RuneSelf {
			return len(s)
		}
		if utf8.RuneStart(c) {
			if utf8.FullRuneInString(s[len(s)-back:]) {
				return len(s)
			}
			return len(s) - back
		}
	}
	return len(s)
}

func (p *qwenParser) stepText(final bool) bool {
	if p.buf == "" {
		return false
	}
	var i int
	var tag string
	var partial bool
	switch {
	case p.st == stReasoning:
		i, tag, partial = scanTags(p.buf, tagThinkEnd, tagToolCall)
	case p.sawContent:
		i, tag, partial = scanTags(p.buf, tagToolCall)
	default:
		// <think> opens reasoning only before any answer text.
		i, tag, partial = scanTags(p.buf, tagToolCall, tagThink)
		if (tag == tagThink || partial) && strings.TrimLeft(p.buf[:i], spaces) != "" {
			i, tag, partial = scanTags(p.buf, tagToolCall)
		}
	}
	switch {
	case i < 0:
		n := len(p.buf)
		if !final {
			n = completeUTF8(p.buf)
		}
		p.text(p.consume(n))
		return false
	case partial:
		p.text(p.consume(i))
		if final {
			p.text(p.consume(len(p.buf)))
		}
		return false
	}
	p.text(p.consume(i))
	p.consume(len(tag))
	p.endSection()
	switch tag {
	case tagThink:
		p.st = stReasoning
	case tagThinkEnd:
		p.st = stContent
	case tagToolCall:
		p.raw.Reset()
		p.raw.WriteString(tag)
		p.st = stCallOpen
	}
	return true
}

// text emits section text of the current state's kind.
func (p *qwenParser) text(s string) {
	kind := EventContent
	if p.st == stReasoning {
		kind = EventReasoning
	}
	p.textEmitter.text(kind, s)
}
