package server

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
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
// function) to the language of the model's tool calls (its format's
// chat.CallSyntax), so that it is always a call to an offered function,
// with its required arguments, and never markup left in the content:
//
//	[reasoning "</think>"] space* Open call (Again call)* Close end-of-turn
//	call = NAME [":" INDEX] NameEnd args CallEnd
//	args = (ParamOpen PARAM ParamMid VALUE ValueEnd AfterValue)*   markup arguments
//	     | "{" ["\"" PARAM "\": " JSON (", \"" PARAM "\": " JSON)*] "}"   JSON arguments
//
// NAME is an offered function (the named one); each PARAM is one of its
// parameters, at most once, and the required ones all come before the
// call's end. Reasoning and markup values are free text, except that they
// may not hold a tag that would end them early (the format's tags) or an
// end-of-turn; JSON values are any JSON (nesting at most maxDepth) of
// the type the parameter's schema gives, whose strings may not hold a tag
// either. (Markup values are typed by the parser, from the same schema.) A single call is allowed for a named
// function or parallel_tool_calls false. INDEX (Kimi-K2) counts the calls
// of the conversation.
//
// It works on text: before each token, every token whose text would leave
// the language is masked out of the logits.
type callGrammar struct {
	sx      *chat.CallSyntax
	texts   []string
	special []bool
	stops   []int
	lt      []bool // lt[id]: the token's text holds a '<' (computed at the first mask)
	plain   []bool // plain[id]: nor '"', '\\' or a control byte: it cannot end a JSON string
	names   []string
	params  map[string][]string // function → parameter names
	keys    map[string][]string // function → parameter names as JSON strings
	types   map[string][]string // function → each parameter's JSON schema type, or ""
	need    map[string]uint64   // function → bitmask of required parameters
	multi   bool
	first   int // the conversation's calls before this reply (Kimi-K2's INDEX)
	maxTail int
	// tokTags are the tags that are tokens of the vocabulary: a structural
	// piece is written with them, never split across tokens (the
	// tokenizer's own spelling; a split multi-byte tag may not be
	// completable at all, its bytes being no token's text).
	tokTags []string
	// st is the state after the first n bytes of the generated text;
	// st0 before any.
	st, st0 gstate
	n       int
}

type phase uint8

const (
	phReasoning phase = iota
	phGap             // spaces before the first call
	phLit             // a structural piece: one of expect()'s alternatives
	phValue           // a markup argument's value
	phJSON            // a JSON argument's value
	phEnd             // after a call: end of turn (or another call)
	phBad             // left the language
)

// slot says which structural piece phLit is in.
type slot uint8

const (
	slOpen  slot = iota // Open
	slName              // NAME [":" INDEX] NameEnd
	slBody              // markup arguments: ParamOpen PARAM ParamMid, or CallEnd
	slArgs              // JSON arguments: the object's next key, or its end and CallEnd
	slSep               // AfterValue
	slAfter             // Again or Close, in a section of calls
	slAgain             // Again
)

// gstate is the grammar's state; it is copied to try each token, so it
// holds no slices (the JSON nesting is a bit stack).
type gstate struct {
	ph     phase
	sl     slot
	lit    string // phLit: the piece's text so far
	fn     string // the function being called
	used   uint64 // its parameters given so far (bit i: params[fn][i])
	opened bool   // slArgs: the object's "{" is written
	tail   string // free text: its last bytes, where a tag may be forming
	gap    int    // phGap: spaces so far
	calls  int
	closed bool // the section of calls is closed
	json   jsonState
}

const (
	maxGap = 4
	// maxSpace bounds the spaces between JSON tokens, so that a model
	// cannot pad a call forever; maxDepth bounds the nesting.
	maxSpace = 16
	maxDepth = 16
)

func newCallGrammar(sx *chat.CallSyntax, texts []string, special []bool, stops []int, tools []chat.Tool, tc toolChoice, multi, inReasoning bool, first int) *callGrammar {
	g := &callGrammar{sx: sx, texts: texts, special: special, params: map[string][]string{}, keys: map[string][]string{}, types: map[string][]string{},
		need: map[string]uint64{}, multi: multi && tc.mode == "required", first: first}
	for _, tag := range append(slices.Clone(sx.Tags), sx.ValueEnd, "</think>") {
		g.maxTail = max(g.maxTail, len(tag))
	}
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
			// Markup cannot carry these in a parameter name.
			if p != "" && !strings.ContainsAny(p, "<>\n") {
				ps = append(ps, p)
			}
		}
		slices.Sort(ps)
		if len(ps) > 64 {
			ps = ps[:64] // the bitmask's size; more is no real tool
		}
		g.params[name] = ps
		for _, p := range ps {
			var prop struct {
				Type any `json:"type"`
			}
			json.Unmarshal(schema.Properties[p], &prop)
			typ, _ := prop.Type.(string) // a list of types is not held to
			g.keys[name] = append(g.keys[name], jsonKey(p))
			g.types[name] = append(g.types[name], typ)
		}
		for _, r := range schema.Required {
			if i := slices.Index(ps, r); i >= 0 {
				g.need[name] |= 1 << i
			}
		}
	}
	if !inReasoning {
		g.st.ph = phGap
	}
	g.st0 = g.st
	return g
}

// jsonKey is a parameter name as a JSON string, as json.dumps writes it.
func jsonKey(p string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(p)
	return strings.TrimSuffix(b.String(), "\n")
}

// mask is a convo.Options.Logits function.
func (g *callGrammar) mask(gen string, logits []float32) {
	if g.lt == nil {
		g.lt = make([]bool, len(g.texts))
		g.plain = make([]bool, len(g.texts))
		for id, t := range g.texts {
			g.lt[id] = strings.IndexByte(t, '<') >= 0
			g.plain[id] = !g.lt[id] && !strings.ContainsFunc(t, func(r rune) bool { return r == '"' || r == '\\' || r < 0x20 })
			if (slices.Contains(g.sx.Tags, t) || t == g.sx.ValueEnd) && !slices.Contains(g.tokTags, t) {
				g.tokTags = append(g.tokTags, t)
			}
		}
	}
	st := g.state(gen)
	if st.ph == phBad {
		return // cannot happen while every token is masked; let it be
	}
	// In free text with no tag forming, a token without '<' cannot
	// complete a tag (nor, plain, end a JSON string): it needs no trial.
	forming := strings.Contains(st.tail, "<")
	free := (st.ph == phReasoning || st.ph == phValue) && !forming
	plain := st.ph == phJSON && st.json.st == jsString && !forming
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
	for id := range logits {
		if !g.allowed(&st, id, free, plain, rest) {
			logits[id] = -1e30
		}
	}
}

// allowed reports whether token id may follow *st, which it leaves as it
// is (a trial runs on a copy: copying the state for every token of the
// vocabulary would cost more than the test).
func (g *callGrammar) allowed(st *gstate, id int, free, plain bool, rest []string) bool {
	if id >= len(g.texts) {
		return false
	}
	if slices.Contains(g.stops, id) {
		return st.ph == phEnd
	}
	text := g.texts[id]
	// A special token is only the markup's own tag (some tokenizers flag
	// the tool-call tokens special).
	if text == "" || g.special[id] && !slices.Contains(g.sx.Tags, text) {
		return false
	}
	if free && !g.lt[id] || plain && g.plain[id] {
		return true
	}
	if rest != nil {
		trial := false
		for _, r := range rest {
			if len(text) < len(r) && strings.HasPrefix(r, text) {
				return !g.splitsTag(*st, st.lit+text) // inside the piece
			}
			trial = trial || strings.HasPrefix(text, r)
		}
		if !trial {
			return false // leaves every alternative
		}
	}
	trial := *st
	return g.feed(&trial, text) && (trial.ph != phLit || !g.splitsTag(trial, trial.lit))
}

// splitsTag reports whether lit, the start of st's structural piece, ends
// inside a tag that is a token in every alternative it begins.
func (g *callGrammar) splitsTag(st gstate, lit string) bool {
	if len(g.tokTags) == 0 || lit == "" {
		return false
	}
	st.lit = lit
	for _, alt := range g.expect(&st) {
		if strings.HasPrefix(alt, lit) && !cutsTag(alt, len(lit), g.tokTags) {
			return false
		}
	}
	return true
}

// cutsTag reports whether position n of s falls strictly inside one of tags.
func cutsTag(s string, n int, tags []string) bool {
	for _, tag := range tags {
		for i := 0; ; {
			k := strings.Index(s[i:], tag)
			if k < 0 {
				break
			}
			if start := i + k; start < n && n < start+len(tag) {
				return true
			}
			i += k + 1
		}
	}
	return false
}

// state is the grammar's state after gen, which only grows between calls.
func (g *callGrammar) state(gen string) gstate {
	if len(gen) < g.n {
		g.st, g.n = g.st0, 0 // not expected; start over
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
	if gen != "" && st.gap < len(g.sx.Lead) {
		lead = g.sx.Lead[st.gap:] // the template's separation after </think>
	}
	s := lead + g.sx.Open
	if len(g.names) == 1 {
		s += g.nameAlt(&st, g.names[0])
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
		st.tail = keepTail(st.tail, c, g.maxTail)
		if strings.HasSuffix(st.tail, "</think>") {
			st.ph, st.tail = phGap, ""
			return
		}
		for _, tag := range g.sx.Tags {
			if tag != "</think>" && strings.HasSuffix(st.tail, tag) {
				st.ph = phBad // a call must come after the reasoning
			}
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
	case phJSON:
		if !g.stepJSON(st, c) { // a number ended at c, which is the next piece's
			g.step(st, c)
		}
	case phEnd:
		if !g.multi || st.closed {
			st.ph = phBad
			return
		}
		st.ph, st.sl, st.lit = phLit, slAgain, ""
		g.step(st, c)
	}
}

// stepLit matches c against the current piece's alternatives.
func (g *callGrammar) stepLit(st *gstate, c byte) {
	lit := st.lit + string([]byte{c}) // a byte, not the rune c
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
	case slAfter:
		if done == g.sx.Close {
			st.ph, st.closed = phEnd, true
			return
		}
		st.sl = slName
	case slName:
		for _, n := range g.names {
			if done == g.nameAlt(st, n) {
				st.fn = n
			}
		}
		st.used, st.opened, st.sl = 0, false, slArgs
		if g.sx.Param {
			st.sl = slBody
		}
	case slSep:
		st.sl = slBody
	case slBody:
		if done == g.sx.CallEnd {
			g.callDone(st)
			return
		}
		p := strings.TrimSuffix(strings.TrimPrefix(done, g.sx.ParamOpen), g.sx.ParamMid)
		st.used |= 1 << slices.Index(g.params[st.fn], p)
		st.ph, st.tail = phValue, ""
	case slArgs:
		if strings.HasSuffix(done, g.sx.CallEnd) {
			g.callDone(st)
			return
		}
		st.opened, st.ph, st.json = true, phJSON, jsonState{}
		for i, k := range g.keys[st.fn] {
			if strings.HasSuffix(done, k+": ") {
				st.used |= 1 << i
				st.json.want = g.types[st.fn][i]
			}
		}
	}
}

func (g *callGrammar) callDone(st *gstate) {
	st.fn = ""
	st.calls++
	st.ph = phEnd
	if g.sx.Close != "" {
		st.ph, st.sl = phLit, slAfter
	}
}

// nameAlt is a function's name as the current call writes it.
func (g *callGrammar) nameAlt(st *gstate, name string) string {
	if g.sx.Index {
		name += ":" + strconv.Itoa(g.first+st.calls)
	}
	return name + g.sx.NameEnd
}

// expect is the alternatives of the current piece. No alternative is a
// proper prefix of another, so a completed one is never ambiguous.
func (g *callGrammar) expect(st *gstate) []string {
	sx := g.sx
	switch st.sl {
	case slOpen:
		return []string{sx.Open}
	case slAgain:
		return []string{sx.Again}
	case slAfter:
		if g.multi {
			return []string{sx.Close, sx.Again}
		}
		return []string{sx.Close}
	case slSep:
		return []string{sx.AfterValue}
	case slName:
		alts := make([]string, len(g.names))
		for i, n := range g.names {
			alts[i] = g.nameAlt(st, n)
		}
		return alts
	}
	done := st.used&g.need[st.fn] == g.need[st.fn]
	var alts []string
	if st.sl == slBody {
		for i, p := range g.params[st.fn] {
			if st.used&(1<<i) == 0 {
				alts = append(alts, sx.ParamOpen+p+sx.ParamMid)
			}
		}
		if done {
			alts = append(alts, sx.CallEnd)
		}
		return alts
	}
	lead, end := ", ", "}"
	if !st.opened {
		lead, end = "{", "{}"
	}
	for i, k := range g.keys[st.fn] {
		if st.used&(1<<i) == 0 {
			alts = append(alts, lead+k+": ")
		}
	}
	if done {
		alts = append(alts, end+sx.CallEnd)
	}
	return alts
}

// stepValue takes a byte of a markup value, which ends at ValueEnd and may
// not hold a tag the parser would end it at.
func (g *callGrammar) stepValue(st *gstate, c byte) {
	st.tail = keepTail(st.tail, c, g.maxTail)
	// Tags would end the value early in the parser. The start of one is
	// refused too once it is unmistakable (5 bytes: "</par", "<para",
	// "</fun", ...), so the model writes a value or the proper end
	// instead of trailing off into a broken tag. An empty value is the
	// model's to choose: forcing text into it only makes the model ramble.
	for i, tag := range append([]string{g.sx.ValueEnd}, g.sx.Tags...) {
		for n := len(tag); n >= 5; n-- {
			if !strings.HasSuffix(st.tail, tag[:n]) {
				continue
			}
			switch {
			case i > 0:
				st.ph = phBad
			case n == len(tag):
				st.ph, st.sl, st.lit, st.tail = phLit, slSep, "", ""
				if g.sx.AfterValue == "" {
					st.sl = slBody
				}
			}
			return
		}
	}
}

func keepTail(tail string, c byte, n int) string {
	tail += string([]byte{c})
	if len(tail) > n {
		tail = tail[len(tail)-n:]
	}
	return tail
}
