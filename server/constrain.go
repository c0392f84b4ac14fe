package server

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/fmoe/fmoe/chat"
)

// tokenTexts is each id's text, for constraining what may be sampled.
func (s *Server) tokenTexts() []string {
	s.textsOnce.Do(func() {
		n := s.e.Model.Config.VocabSize
		s.texts = make([]string, n)
		s.special = make([]bool, n)
		for id := range n {
			if id < s.e.Tok.VocabSize() {
				s.texts[id] = s.e.Tok.Decode([]int{id})
				s.special[id] = s.e.Tok.IsSpecial(id)
			}
		}
	})
	return s.texts
}

// callGrammar holds a reply that tool_choice forces ("required" or a named
// function) to the language of Qwen3.5's tool calls, so that it is always
// a call to an offered function, with its required parameters, and never
// markup left in the content:
//
//	[reasoning "</think>"] space* call ("\n" call)* end-of-turn
//	call  = "<tool_call>\n<function=" NAME ">\n" param* "</function>\n</tool_call>"
//	param = "<parameter=" PARAM ">\n" VALUE "</parameter>\n"
//
// NAME is an offered function (the named one); each PARAM is one of its
// parameters, at most once, and the required ones all come before
// "</function>". Reasoning and values are free text, except that they may
// not hold a tag that would end them early (the chat parser's tags) or an
// end-of-turn. A single call is allowed for a named function or
// parallel_tool_calls false.
//
// It works on text: before each token, every token whose text would leave
// the language is masked out of the logits.
type callGrammar struct {
	texts   []string
	special []bool
	stops   []int
	lt      []bool // lt[id]: the token\'s text holds a \'<\' (computed at the first mask)
	names   []string
	params  map[string][]string // function → parameter names
	need    map[string]uint64   // function → bitmask of required parameters
	multi   bool
	// st is the state after the first n bytes of the generated text.
	st gstate
	n  int
}

type phase uint8

const (
	phReasoning phase = iota
	phGap             // spaces before the first call
	phLit             // a structural piece: one of expect()'s alternatives
	phValue           // a parameter value
	phEnd             // after a call: end of turn (or another call)
	phBad             // left the language
)

// slot says which structural piece phLit is in.
type slot uint8

const (
	slOpen  slot = iota // "<tool_call>\n<function="
	slName              // NAME ">\n"
	slBody              // "<parameter=" PARAM ">\n" or "</function>\n</tool_call>"
	slAgain             // "\n<tool_call>\n<function=" (another call)
)

// gstate is the grammar's state; it is copied to try each token.
type gstate struct {
	ph    phase
	sl    slot
	lit   string // phLit: the piece's text so far
	fn    string // the function being called
	used  uint64 // its parameters given so far (bit i: params[fn][i])
	tail  string // free text: its last bytes, where a tag may be forming
	exit  bool   // phValue: "</parameter>" seen, "\n" must follow
	gap   int    // phGap: spaces so far
	calls int
}

const (
	tagCallOpen  = "<tool_call>\n<function="
	tagCallClose = "</function>\n</tool_call>"
	maxGap       = 4
	maxTail      = 16
)

func newCallGrammar(texts []string, special []bool, stops []int, tools []chat.Tool, tc toolChoice, multi, inReasoning bool) *callGrammar {
	g := &callGrammar{texts: texts, special: special, params: map[string][]string{},
		need: map[string]uint64{}, multi: multi && tc.mode == "required"}
	// A few ids, scanned for each of the vocabulary's tokens: a slice is
	// several times faster than a map there (the mask's main cost).
	g.stops = slices.Clone(stops)
	for _, t := range tools {
		name := t.Function.Name
		if tc.mode == "function" && name != tc.name {
			continue
		}
		g.names = append(g.names, name)
		var schema struct {
			Properties map[string]json.RawMessage `json:"properties"`
			Required   []string                   `json:"required"`
		}
		json.Unmarshal(t.Function.Parameters, &schema)
		var ps []string
		for p := range schema.Properties {
			// Qwen's markup cannot carry these in a parameter name.
			if p != "" && !strings.ContainsAny(p, "<>\n") {
				ps = append(ps, p)
			}
		}
		slices.Sort(ps)
		if len(ps) > 64 {
			ps = ps[:64] // the bitmask's size; more is no real tool
		}
		g.params[name] = ps
		for _, r := range schema.Required {
			if i := slices.Index(ps, r); i >= 0 {
				g.need[name] |= 1 << i
			}
		}
	}
	if !inReasoning {
		g.st.ph = phGap
	}
	return g
}

// mask is a convo.Options.Logits function.
func (g *callGrammar) mask(gen string, logits []float32) {
	st := g.state(gen)
	if st.ph == phBad {
		return // cannot happen while every token is masked; let it be
	}
	// In free text with no tag forming, a token without '<' cannot
	// complete a tag: it needs no trial.
	free := (st.ph == phReasoning || st.ph == phValue) && !st.exit && !strings.Contains(st.tail, "<")
	// In a structural piece most tokens are decided by the rest of its
	// alternatives alone; only one that completes a piece needs a trial.
	var rest []string
	if st.ph == phLit {
		for _, alt := range g.expect(&st) {
			if strings.HasPrefix(alt, st.lit) {
				rest = append(rest, alt[len(st.lit):])
			}
		}
	}
	if g.lt == nil {
		g.lt = make([]bool, len(g.texts))
		for id, t := range g.texts {
			g.lt[id] = strings.IndexByte(t, '<') >= 0
		}
	}
	for id := range logits {
		if !g.allowed(st, id, free, rest) {
			logits[id] = -1e30
		}
	}
}

func (g *callGrammar) allowed(st gstate, id int, free bool, rest []string) bool {
	if id >= len(g.texts) {
		return false
	}
	if slices.Contains(g.stops, id) {
		return st.ph == phEnd
	}
	text := g.texts[id]
	if text == "" || g.special[id] {
		return false
	}
	if free && !g.lt[id] {
		return true
	}
	if rest != nil {
		trial := false
		for _, r := range rest {
			if len(text) < len(r) && strings.HasPrefix(r, text) {
				return true // inside the piece
			}
			trial = trial || strings.HasPrefix(text, r)
		}
		if !trial {
			return false // leaves every alternative
		}
	}
	return g.feed(&st, text)
}

// state is the grammar's state after gen, which only grows between calls.
func (g *callGrammar) state(gen string) gstate {
	if len(gen) < g.n {
		g.st, g.n = gstate{}, 0 // not expected; start over
	}
	g.feed(&g.st, gen[g.n:])
	g.n = len(gen)
	return g.st
}

// inject is a convo.Options.Inject function: once the reasoning is over
// (or at once when the prompt closed it) it writes the call's opening for
// the model, with the function's name when tool_choice names one.
func (g *callGrammar) inject(gen string) string {
	st := g.state(gen)
	if st.ph != phGap {
		return ""
	}
	lead := ""
	if gen != "" && st.gap < 2 {
		lead = "\n\n"[st.gap:] // the template's separation after </think>
	}
	s := lead + tagCallOpen
	if len(g.names) == 1 {
		s += g.names[0] + ">\n"
	}
	return s
}

// feed advances st over text and reports whether it is still in the
// language; once out, st stays phBad.
func (g *callGrammar) feed(st *gstate, text string) bool {
	for i := 0; i < len(text) && st.ph != phBad; i++ {
		g.step(st, text[i])
	}
	return st.ph != phBad
}

func (g *callGrammar) step(st *gstate, c byte) {
	switch st.ph {
	case phReasoning:
		st.tail = keepTail(st.tail, c)
		switch {
		case strings.HasSuffix(st.tail, "</think>"):
			st.ph, st.tail = phGap, ""
		case strings.HasSuffix(st.tail, "<tool_call>"):
			st.ph = phBad // a call must come after the reasoning
		}
	case phGap:
		if (c == '\n' || c == ' ') && st.gap < maxGap {
			st.gap++
			return
		}
		st.ph, st.sl, st.lit = phLit, slOpen, ""
		g.step(st, c)
	case phLit:
		g.stepLit(st, c)
	case phValue:
		g.stepValue(st, c)
	case phEnd:
		if !g.multi {
			st.ph = phBad
			return
		}
		st.ph, st.sl, st.lit = phLit, slAgain, ""
		g.step(st, c)
	}
}

// stepLit matches c against the current piece's alternatives.
func (g *callGrammar) stepLit(st *gstate, c byte) {
	lit := st.lit + string(c)
	done, ok := "", false
	for _, alt := range g.expect(st) {
		if strings.HasPrefix(alt, lit) {
			ok = true
			if alt == lit {
				done = alt
			}
		}
	}
	if !ok {
		st.ph = phBad
		return
	}
	st.lit = lit
	if done == "" {
		return
	}
	st.lit = ""
	switch st.sl {
	case slOpen, slAgain:
		st.sl = slName
	case slName:
		st.fn, st.used, st.sl = strings.TrimSuffix(done, ">\n"), 0, slBody
	case slBody:
		if done == tagCallClose {
			st.ph, st.fn = phEnd, ""
			st.calls++
			return
		}
		p := strings.TrimSuffix(strings.TrimPrefix(done, "<parameter="), ">\n")
		st.used |= 1 << slices.Index(g.params[st.fn], p)
		st.ph, st.tail, st.exit = phValue, "", false
	}
}

// expect is the alternatives of the current piece. No alternative is a
// proper prefix of another, so a completed one is never ambiguous.
func (g *callGrammar) expect(st *gstate) []string {
	switch st.sl {
	case slOpen:
		return []string{tagCallOpen}
	case slAgain:
		return []string{"\n" + tagCallOpen}
	case slName:
		alts := make([]string, len(g.names))
		for i, n := range g.names {
			alts[i] = n + ">\n"
		}
		return alts
	}
	var alts []string
	for i, p := range g.params[st.fn] {
		if st.used&(1<<i) == 0 {
			alts = append(alts, "<parameter="+p+">\n")
		}
	}
	if st.used&g.need[st.fn] == g.need[st.fn] {
		alts = append(alts, tagCallClose)
	}
	return alts
}

// stepValue takes a byte of a parameter value, which ends at
// "</parameter>\n" and may not hold a tag the parser would end it at.
func (g *callGrammar) stepValue(st *gstate, c byte) {
	if st.exit {
		if c != '\n' {
			st.ph = phBad
			return
		}
		st.ph, st.sl, st.lit, st.tail = phLit, slBody, "", ""
		return
	}
	st.tail = keepTail(st.tail, c)
	// Tags would end the value early in the parser. The start of one is
	// refused too once it is unmistakable (5 bytes: "</par", "<para",
	// "</fun", ...), so the model writes a value or the proper end
	// instead of trailing off into a broken tag. The proper end is
	// "</parameter>" (the template puts a newline before it; the parser
	// does without). An empty value is the model's to choose: forcing
	// text into it only makes the model ramble.
	for _, tag := range valueTags {
		for n := len(tag); n >= 5; n-- {
			if !strings.HasSuffix(st.tail, tag[:n]) {
				continue
			}
			if tag != "</parameter>" {
				st.ph = phBad
			} else if n == len(tag) {
				st.exit = true
			}
			return
		}
	}
}

// valueTags may not appear in a value: the parser's tags that end one,
// and the markup of a new call or of the reasoning, which only a model
// that lost its place writes there.
var valueTags = []string{"</parameter>", "<parameter=", "</function>", "</tool_call>", "<tool_call>", "<function=", "</think>"}

func keepTail(tail string, c byte) string {
	tail += string(c)
	if len(tail) > maxTail {
		tail = tail[len(tail)-maxTail:]
	}
	return tail
}
