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
		for id := range n {
			if id < s.e.Tok.VocabSize() {
				s.texts[id] = s.e.Tok.Decode([]int{id})
			}
		}
	})
	return s.texts
}

// callGrammar keeps a tool call that tool_choice forced well formed: at each
// structural point of Qwen3.5's call markup (the function name, the
// parameter tags, the closing tags) only tokens that continue an allowed
// piece may be sampled. Parameter values are left free.
type callGrammar struct {
	texts  []string
	params map[string][]string // function name → parameter names
}

func newCallGrammar(texts []string, tools []chat.Tool) *callGrammar {
	g := &callGrammar{texts: texts, params: map[string][]string{}}
	for _, t := range tools {
		var schema struct {
			Properties map[string]json.RawMessage `json:"properties"`
		}
		json.Unmarshal(t.Function.Parameters, &schema)
		var ps []string
		for p := range schema.Properties {
			ps = append(ps, p)
		}
		slices.Sort(ps)
		g.params[t.Function.Name] = ps
	}
	return g
}

// mask is a convo.Options.Logits function.
func (g *callGrammar) mask(gen string, logits []float32) {
	at, targets := g.expect(gen)
	if targets == nil {
		return
	}
	for id := range logits {
		if id >= len(g.texts) || g.texts[id] == "" || !continuesAny(at+g.texts[id], targets) {
			logits[id] = -1e30
		}
	}
}

// expect returns the text since the last structural point of the first call
// and the pieces that may follow it, or nil where generation is free.
func (g *callGrammar) expect(gen string) (string, []string) {
	i := strings.Index(gen, "<function=")
	if i < 0 {
		return "", nil
	}
	s := gen[i+len("<function="):]
	j := strings.Index(s, ">")
	if j < 0 {
		var names []string
		for n := range g.params {
			names = append(names, n+">\n")
		}
		return s, names
	}
	name := s[:j]
	s = s[j+1:]
	var targets []string
	for _, p := range g.params[name] {
		targets = append(targets, "\n<parameter="+p+">\n")
	}
	targets = append(targets, "\n</function>")
	for {
		t := prefixIn(s, targets)
		switch {
		case t == "":
			if continuesAny(s, targets) {
				return s, targets
			}
			return "", nil // the model left the grammar; let it be
		case t == "\n</function>":
			if rest := s[len(t):]; strings.HasPrefix("\n</tool_call>", rest) && rest != "\n</tool_call>" {
				return rest, []string{"\n</tool_call>"}
			}
			return "", nil
		default:
			v := s[len(t):]
			k := strings.Index(v, "\n</parameter>")
			if k < 0 {
				return "", nil // inside a value
			}
			s = v[k+len("\n</parameter>"):]
		}
	}
}

// prefixIn returns the target s starts with, or "".
func prefixIn(s string, targets []string) string {
	for _, t := range targets {
		if strings.HasPrefix(s, t) {
			return t
		}
	}
	return ""
}

// continuesAny reports whether s could still become, or already starts
// with, one of targets.
func continuesAny(s string, targets []string) bool {
	for _, t := range targets {
		if strings.HasPrefix(t, s) || strings.HasPrefix(s, t) {
			return true
		}
	}
	return false
}
