package chat

import "strings"

// Tool-call states of the Parser. Each step consumes what it can decide
// on and reports whether it made progress; it never decides on text that
// more input could change.

// skipSpaces moves leading whitespace of the buffer into the raw markup.
func (p *qwenParser) skipSpaces() {
	n := len(p.buf) - len(strings.TrimLeft(p.buf, spaces))
	p.raw.WriteString(p.consume(n))
}

// abandon gives up on the current tool call: its markup so far becomes
// Unparsed content and parsing resumes as content at the current position.
// At the end of the stream the rest of the buffer belongs to it as well.
// problem says what was wrong (Event.Problem), for the user's warning.
func (p *qwenParser) abandon(final bool, problem string) {
	if final {
		p.raw.WriteString(p.consume(len(p.buf)))
	}
	p.endSection()
	p.pushText(EventContent, p.raw.String(), true, p.callIndex)
	p.events[len(p.events)-1].Problem = FormatQwen.Name + " tool call: " + problem
	p.sawContent = true
	p.resetCall()
	p.st = stContent
}

func (p *qwenParser) resetCall() {
	p.raw.Reset()
	p.callIndex = -1
	p.callID, p.callName, p.paramName = "", "", ""
	p.callArgs.Reset()
	p.paramValue.Reset()
}

func (p *qwenParser) stepCallOpen(final bool) bool {
	p.skipSpaces()
	switch {
	case strings.HasPrefix(p.buf, tagFunction):
		p.raw.WriteString(p.consume(len(tagFunction)))
		p.st = stFuncName
		return true
	case strings.HasPrefix(p.buf, "{"):
		p.st = stJSONCall
		return true
	case p.buf != "" && !prefixOf(p.buf, tagFunction):
		p.abandon(false, "expected <function=NAME> or a JSON object after <tool_call>")
		return true
	case final:
		p.abandon(true, "the output ended before </tool_call>")
		return true
	}
	return false
}

func (p *qwenParser) stepName(final bool) bool {
	end := strings.IndexByte(p.buf, '>')
	scan := p.buf
	if end >= 0 {
		scan = p.buf[:end]
	}
	bad := strings.ContainsAny(scan, "<\n") || len(scan) > maxNameLen
	if bad || end < 0 && final {
		p.abandon(final, nameProblem(bad))
		return true
	}
	if end < 0 {
		return false
	}
	name := strings.TrimSpace(scan)
	if name == "" {
		p.abandon(final, "an empty function or parameter name")
		return true
	}
	p.raw.WriteString(p.consume(end + 1))
	if p.st == stFuncName {
		p.startCall(name)
		p.st = stFuncBody
	} else {
		p.paramName = name
		p.paramValue.Reset()
		p.st = stParamValue
	}
	return true
}

func (p *qwenParser) startCall(name string) {
	p.callIndex = p.nextIndex
	p.nextIndex++
	p.callID = p.opts.NewID()
	p.callName = name
	p.callArgs.Reset()
	p.events = append(p.events, Event{Kind: EventToolCallDelta, Delta: &ToolCallDelta{
		Index: p.callIndex, ID: p.callID, Type: "function",
		Function: FunctionDelta{Name: name},
	}})
}

func (p *qwenParser) argsDelta(fragment string) {
	p.callArgs.WriteString(fragment)
	p.events = append(p.events, Event{Kind: EventToolCallDelta, Delta: &ToolCallDelta{
		Index: p.callIndex, Function: FunctionDelta{Arguments: fragment},
	}})
}

func (p *qwenParser) finishCall() {
	if p.callArgs.Len() == 0 {
		p.argsDelta("{}")
	} else {
		p.argsDelta("}")
	}
	p.events = append(p.events, Event{Kind: EventToolCall, Index: p.callIndex, Call: &ToolCall{
		ID: p.callID, Type: "function",
		Function: FunctionCall{Name: p.callName, Arguments: p.callArgs.String()},
	}})
	p.resetCall()
}

func (p *qwenParser) stepFuncBody(final bool) bool {
	p.skipSpaces()
	switch {
	case strings.HasPrefix(p.buf, tagParameter):
		p.raw.WriteString(p.consume(len(tagParameter)))
		p.st = stParamName
	case strings.HasPrefix(p.buf, tagFunctionEnd):
		p.consume(len(tagFunctionEnd))
		p.finishCall()
		p.st = stAfterFunc
	case strings.HasPrefix(p.buf, tagToolCallEnd):
		// </function> was left out; the call is still complete.
		p.consume(len(tagToolCallEnd))
		p.finishCall()
		p.st = stContent
	case p.buf != "" && !prefixOf(p.buf, tagParameter, tagFunctionEnd, tagToolCallEnd):
		p.abandon(false, "expected <parameter=NAME> or </function> inside <function=NAME>")
	case final:
		p.abandon(true, "the output ended before </tool_call>")
	default:
		return false
	}
	return true
}

func (p *qwenParser) stepParamValue(final bool) bool {
	i, tag, partial := scanTags(p.buf, tagParameterEnd, tagParameter, tagFunctionEnd, tagToolCallEnd)
	switch {
	case i < 0 || partial:
		n := len(p.buf)
		if partial {
			n = i
		}
		v := p.consume(n)
		p.raw.WriteString(v)
		p.paramValue.WriteString(v)
		if final {
			p.abandon(true, "the output ended before </parameter>")
			return true
		}
		return false
	}
	v := p.consume(i)
	p.raw.WriteString(v)
	p.paramValue.WriteString(v)
	if tag == tagParameterEnd {
		p.raw.WriteString(p.consume(len(tag)))
	}
	// Other tags mean </parameter> was left out; stFuncBody consumes them.
	p.addParam()
	p.st = stFuncBody
	return true
}

func (p *qwenParser) addParam() {
	sep := ","
	if p.callArgs.Len() == 0 {
		sep = "{"
	}
	value := paramValue(p.paramValue.String(), p.schemas.lookup(p.callName, p.paramName))
	p.argsDelta(sep + jsonString(p.paramName) + ":" + value)
	p.paramName = ""
	p.paramValue.Reset()
}

func (p *qwenParser) stepAfterFunc(final bool) bool {
	p.buf = strings.TrimLeft(p.buf, spaces)
	switch {
	case strings.HasPrefix(p.buf, tagToolCallEnd):
		p.consume(len(tagToolCallEnd))
		p.st = stContent
	case strings.HasPrefix(p.buf, tagFunction):
		p.raw.Reset()
		p.raw.WriteString(p.consume(len(tagFunction)))
		p.st = stFuncName
	case strings.HasPrefix(p.buf, tagToolCall):
		p.raw.Reset()
		p.raw.WriteString(p.consume(len(tagToolCall)))
		p.st = stCallOpen
	case p.buf != "" && !prefixOf(p.buf, tagToolCallEnd, tagFunction, tagToolCall):
		// </tool_call> was left out and text follows.
		p.st = stContent
	case final && p.buf != "":
		// A cut-off closing tag: keep it as content rather than lose it.
		p.st = stContent
	case final:
		p.st = stContent
		return false
	default:
		return false
	}
	return true
}

func (p *qwenParser) stepJSONCall(final bool) bool {
	i, _, partial := scanTags(p.buf, tagToolCallEnd)
	if i < 0 || partial {
		n := len(p.buf)
		if partial {
			n = i
		}
		v := p.consume(n)
		p.raw.WriteString(v)
		p.paramValue.WriteString(v)
		if !final {
			return false
		}
		if name, args, ok := parseJSONCall(p.paramValue.String()); ok {
			p.emitJSONCall(name, args)
			p.st = stContent
			return false
		}
		p.abandon(true, "the output ended before </tool_call>")
		return true
	}
	v := p.consume(i)
	p.raw.WriteString(v)
	p.paramValue.WriteString(v)
	p.raw.WriteString(p.consume(len(tagToolCallEnd)))
	if name, args, ok := parseJSONCall(p.paramValue.String()); ok {
		p.emitJSONCall(name, args)
		p.st = stContent
		return true
	}
	p.abandon(false, `the call is not JSON of the form {"name": ..., "arguments": {...}}`)
	return true
}

func (p *qwenParser) emitJSONCall(name, args string) {
	p.startCall(name)
	p.callArgs.WriteString(args)
	p.events = append(p.events, Event{Kind: EventToolCallDelta, Delta: &ToolCallDelta{
		Index: p.callIndex, Function: FunctionDelta{Arguments: args},
	}})
	p.events = append(p.events, Event{Kind: EventToolCall, Index: p.callIndex, Call: &ToolCall{
		ID: p.callID, Type: "function",
		Function: FunctionCall{Name: name, Arguments: args},
	}})
	p.resetCall()
}

// nameProblem is the Problem of a function or parameter name that is not
// one (bad) or that the output ended in.
func nameProblem(bad bool) string {
	if bad {
		return "a function or parameter name holds a newline or '<', or is too long (want <function=NAME>)"
	}
	return "the output ended in a function or parameter name"
}
