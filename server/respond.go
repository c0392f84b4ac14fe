package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/fmoe/fmoe/chat"
)

// responder turns generated text into the response: parsed into content,
// reasoning and tool calls, and streamed as chat.completion.chunk events or
// collected into one chat.completion.
type responder struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	// stall is how long the client may take to accept one write; a write
	// that takes longer fails, which cancels the generation.
	stall   time.Duration
	stream  bool
	id      string
	created int64
	name    string
	fp      string
	parser  *chat.Parser
	filter  stopFilter
	none    bool // tool_choice "none": tool calls stay text
	// tpl writes the calls back as text when none is set, in the model's
	// own markup.
	tpl *chat.Template
	// forced: tool_choice forces a call. A call cut off (by max_tokens)
	// is dropped rather than returned as markup in the content.
	forced  bool
	timings *timings // sent with the usage
	events  []chat.Event
	started bool  // the stream's headers are out
	err     error // a failed write: the client is gone
}

func (o *responder) start() {
	if !o.stream {
		return
	}
	h := o.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	o.w.WriteHeader(http.StatusOK)
	o.started = true
	empty := ""
	o.chunk(&delta{Role: "assistant", Content: &empty}, nil, nil)
}

// feed takes the next generated text.
func (o *responder) feed(piece string) {
	if text := o.filter.add(piece); text != "" {
		o.handle(o.parser.Feed(text))
	}
}

func (o *responder) handle(evs []chat.Event) {
	for _, ev := range evs {
		if o.forced && ev.Unparsed {
			continue
		}
		if o.none {
			switch ev.Kind {
			case chat.EventToolCallDelta:
				continue
			case chat.EventToolCall:
				ev = chat.Event{Kind: chat.EventContent, Text: o.tpl.CallMarkup([]chat.ToolCall{*ev.Call})}
			}
		}
		o.events = append(o.events, ev)
		if !o.stream {
			continue
		}
		switch ev.Kind {
		case chat.EventContent:
			text := ev.Text
			o.chunk(&delta{Content: &text}, nil, nil)
		case chat.EventReasoning:
			o.chunk(&delta{ReasoningContent: ev.Text}, nil, nil)
		case chat.EventToolCallDelta:
			o.chunk(&delta{ToolCalls: []chat.ToolCallDelta{*ev.Delta}}, nil, nil)
		}
	}
}

// finish ends the response once generation has ended.
func (o *responder) finish(length bool, u *usage, includeUsage bool) {
	if !o.filter.hit {
		if text := o.filter.flush(); text != "" {
			o.handle(o.parser.Feed(text))
		}
	}
	o.handle(o.parser.Close())
	res := chat.Collect(o.events)
	reason := "stop"
	switch {
	case length:
		reason = "length"
	case len(res.ToolCalls) > 0:
		reason = "tool_calls"
	}
	if o.stream {
		o.chunk(&delta{}, &reason, nil)
		if includeUsage {
			o.chunk(nil, nil, u)
		}
		o.write("[DONE]")
		return
	}
	msg := &chat.Message{Role: "assistant", Content: res.Content, ReasoningContent: res.Reasoning, ToolCalls: res.ToolCalls}
	o.deadline()
	writeJSON(o.w, http.StatusOK, &completion{
		ID: o.id, Object: "chat.completion", Created: o.created, Model: o.name, SystemFingerprint: o.fp,
		Choices: []choice{{Message: msg, FinishReason: &reason}}, Usage: u, Timings: o.timings,
	})
}

// fail reports an error: as a status before the stream starts, as an error
// event after.
func (o *responder) fail(status int, code string, err error) {
	typ := "server_error"
	if status < 500 {
		typ = "invalid_request_error"
	}
	if !o.started {
		o.deadline()
		writeError(o.w, status, typ, code, err.Error())
		return
	}
	b, _ := json.Marshal(newAPIError(typ, code, err.Error()))
	o.write(string(b))
	o.write("[DONE]")
}

// chunk streams one chat.completion.chunk; a nil delta makes the usage-only
// chunk that has no choices.
func (o *responder) chunk(d *delta, finish *string, u *usage) {
	c := completion{ID: o.id, Object: "chat.completion.chunk", Created: o.created, Model: o.name, SystemFingerprint: o.fp, Usage: u, Choices: []choice{}}
	if d != nil {
		c.Choices = []choice{{Delta: d, FinishReason: finish}}
	}
	if u != nil {
		c.Timings = o.timings
	}
	b, err := json.Marshal(&c)
	if err != nil {
		o.err = err
		return
	}
	o.write(string(b))
}

// write sends one event and flushes it to the client, which must take it
// within the stall time: a client that stops reading fails the write
// instead of holding the model.
func (o *responder) write(data string) {
	if o.err != nil {
		return
	}
	o.deadline()
	if _, err := fmt.Fprintf(o.w, "data: %s\n\n", data); err != nil {
		o.err = err
		return
	}
	if o.rc != nil {
		if err := o.rc.Flush(); err != nil {
			o.err = err
		}
	}
}

// deadline gives the next write the stall time. Writers without deadlines
// (test recorders) are left as they are.
func (o *responder) deadline() {
	if o.rc != nil && o.stall > 0 {
		o.rc.SetWriteDeadline(time.Now().Add(o.stall))
	}
}
