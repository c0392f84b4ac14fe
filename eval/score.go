// Package eval runs an fmoe eval file (models/fmoe-tiny-chat/eval/eval.json)
// greedily and scores the answers exactly as the file's "scoring" rule and
// the reference scorer (tools/train_tiny.py, score) do.
package eval

import (
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Expected is a case's wanted answer.
type Expected struct {
	Type      string         `json:"type"` // "tool_call", "json" or "text"
	Name      string         `json:"name,omitempty"`
	Arguments map[string]any `json:"arguments,omitempty"`
	Value     any            `json:"value,omitempty"`
	Text      string         `json:"text,omitempty"`
}

// pyWS is Python's str.isspace set (the reference scorer strips with it and
// its \s matches it), wider than Go's \s.
const pyWS = `\t\n\v\f\r\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}`

// The reference's TOOL_RE and PARAM_RE. Go's leftmost-first matching picks
// the same match as Python's backtracking for these patterns.
var (
	toolRE  = regexp.MustCompile(`(?s)<tool_call>[` + pyWS + `]*<function=([^>\n]+)>[` + pyWS + `]*(.*?)</function>[` + pyWS + `]*</tool_call>`)
	paramRE = regexp.MustCompile(`(?s)<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>`)
)

func pyStrip(s string) string {
	return strings.TrimFunc(s, isPySpace)
}

func isPySpace(r rune) bool {
	switch {
	case r >= '\t' && r <= '\r', r >= 0x1c && r <= 0x20, r == 0x85, r == 0xa0, r == 0x1680,
		r >= 0x2000 && r <= 0x200a, r == 0x2028, r == 0x2029, r == 0x202f, r == 0x205f, r == 0x3000:
		return true
	}
	return false
}

// answer is the part of a completion the scorer looks at: before the first
// <|im_end|>, after the first </think>, stripped.
func answer(text string) string {
	body, _, _ := strings.Cut(text, "<|im_end|>")
	if _, after, ok := strings.Cut(body, "</think>"); ok {
		body = after
	}
	return pyStrip(body)
}

// Verdict is the score of one completion.
type Verdict struct {
	Exact bool
	// Valid: the first tool call parses and names the right function, or the
	// answer parses as JSON with the expected keys. Text answers have no
	// structure, so Valid is always false for them (see Structured).
	Valid bool
}

// Structured reports whether the expected answer has a structure to check.
func (x *Expected) Structured() bool { return x.Type == "tool_call" || x.Type == "json" }

// Score judges a decoded completion (special tokens included).
func Score(text string, x *Expected) Verdict {
	body := answer(text)
	switch x.Type {
	case "tool_call":
		m := toolRE.FindStringSubmatch(body)
		if m == nil || pyStrip(m[1]) != x.Name {
			return Verdict{}
		}
		args := map[string]string{}
		for _, p := range paramRE.FindAllStringSubmatch(m[2], -1) {
			args[pyStrip(p[1])] = p[2]
		}
		exact := len(args) == len(x.Arguments)
		for k, v := range x.Arguments {
			if got, ok := args[k]; !ok || got != pyStr(v) {
				exact = false
			}
		}
		return Verdict{Exact: exact, Valid: true}
	case "json":
		var got any
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			return Verdict{}
		}
		return Verdict{Exact: pyEqual(got, x.Value), Valid: sameKeys(got, x.Value)}
	default:
		return Verdict{Exact: body == x.Text}
	}
}

// pyStr is Python's str() of a JSON value, as the reference compares
// parameters with str(v).
func pyStr(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		if v {
			return "True"
		}
		return "False"
	case nil:
		return "None"
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1e16 {
			return strconv.FormatInt(int64(v), 10)
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// pyEqual is Python's == on values from json.loads: dicts ignore key order,
// and numbers and booleans compare by value (True == 1).
func pyEqual(a, b any) bool {
	if x, ok := pyNum(a); ok {
		y, ok := pyNum(b)
		return ok && x == y
	}
	switch a := a.(type) {
	case string:
		b, ok := b.(string)
		return ok && a == b
	case nil:
		return b == nil
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !pyEqual(a[i], b[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			w, ok := b[k]
			if !ok || !pyEqual(v, w) {
				return false
			}
		}
		return true
	}
	return false
}

func pyNum(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case bool:
		if v {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func sameKeys(a, b any) bool {
	x, ok1 := a.(map[string]any)
	y, ok2 := b.(map[string]any)
	if !ok1 || !ok2 || len(x) != len(y) {
		return false
	}
	for k := range y {
		if _, ok := x[k]; !ok {
			return false
		}
	}
	return true
}
