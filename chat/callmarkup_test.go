package chat

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCallMarkup: for every assistant turn with tool calls in the golden
// renders (real Jinja2) of each family's template and of Qwen3.5's and
// Qwen3's, CallMarkup is the text the template wrote for those calls, and
// the format's parser reads it back as the same calls. Kimi-K2's template
// renders no calls: its markup is the format's own, checked by the parser.
func TestCallMarkup(t *testing.T) {
	type tcase struct {
		msgs     []Message
		rendered string
	}
	// golden: the template renders calls (Kimi-K2's does not);
	// textHidesCalls: it leaves out the calls of a turn with text
	// (DeepSeek-V3's).
	check := func(t *testing.T, tpl *Template, cases []tcase, golden, textHidesCalls bool) {
		t.Helper()
		checked := 0
		for _, c := range cases {
			for _, m := range c.msgs {
				if m.Role != "assistant" || len(m.ToolCalls) == 0 {
					continue
				}
				got := tpl.CallMarkup(m.ToolCalls)
				if golden && (m.Content == "" || !textHidesCalls) && !strings.Contains(c.rendered, got) {
					t.Errorf("%q is not in the golden render %q", got, c.rendered)
				}
				checkCallsParse(t, tpl.Format(), got, m.ToolCalls)
				checked++
			}
		}
		if checked == 0 {
			t.Fatal("no golden case renders a tool call")
		}
	}
	fc := loadFamilyCases(t)
	for fam, f := range fc.Families {
		t.Run(fam, func(t *testing.T) {
			tpl := familyTemplate(t, f.Template, f.SpecialTokens)
			var cases []tcase
			for _, c := range f.Cases {
				if c.Rendered != nil {
					cases = append(cases, tcase{c.Messages, *c.Rendered})
				}
			}
			check(t, tpl, cases, fam != "kimi_k2", fam == "deepseek_v3")
		})
	}
	data, err := os.ReadFile("testdata/render_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Cases []struct {
			Messages []Message `json:"messages"`
			Rendered *string   `json:"rendered"`
			Qwen3    *string   `json:"qwen3"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct{ name, dir string }{{"qwen3.5", filepath.Join(tinyDir, "tokenizer")}, {"qwen3", "../testdata/qwen3-tokenizer"}} {
		t.Run(v.name, func(t *testing.T) {
			tpl, err := LoadTemplate(v.dir)
			if err != nil {
				t.Fatal(err)
			}
			var cases []tcase
			for _, c := range file.Cases {
				r := c.Rendered
				if v.name == "qwen3" {
					r = c.Qwen3
				}
				if r != nil {
					cases = append(cases, tcase{c.Messages, *r})
				}
			}
			check(t, tpl, cases, true, false)
		})
	}
}

// TestWriteCalls: each format's own markup (used when a template renders
// no calls) parses back as the calls it was written from.
func TestWriteCalls(t *testing.T) {
	calls := []ToolCall{
		{ID: "functions.get_weather:0", Type: "function", Function: FunctionCall{Name: "get_weather", Arguments: `{"city": "Paris", "days": 3, "opts": {"unit": "c"}}`}},
		{ID: "call_1", Type: "function", Function: FunctionCall{Name: "bash", Arguments: `{"command": "ls -l <dir>"}`}},
	}
	for _, f := range formats {
		t.Run(f.Name, func(t *testing.T) {
			checkCallsParse(t, f, f.writeCalls(calls), calls)
		})
	}
}

// checkCallsParse parses markup with f's parser and wants exactly calls:
// their names, the keys of their arguments, and the values that are
// strings (without the tools' schemas the others come back as strings of
// the template's rendering).
func checkCallsParse(t *testing.T, f *Format, markup string, calls []ToolCall) {
	t.Helper()
	p := NewParser(ParserOptions{Format: f})
	res := Collect(append(p.Feed(markup), p.Close()...))
	if res.Content != "" || len(res.ToolCalls) != len(calls) {
		t.Fatalf("%s: %q parses as content %q and %d calls", f.Name, markup, res.Content, len(res.ToolCalls))
	}
	for i, c := range res.ToolCalls {
		var got, want map[string]any
		json.Unmarshal([]byte(c.Function.Arguments), &got)
		json.Unmarshal([]byte(calls[i].Function.Arguments), &want)
		same := len(got) == len(want)
		for k, w := range want {
			g, ok := got[k]
			_, str := w.(string)
			same = same && ok && (!str || g == w)
		}
		if c.Function.Name != calls[i].Function.Name || !same {
			t.Errorf("%s: call %d parses as %s(%s), want %s(%s)", f.Name, i, c.Function.Name, c.Function.Arguments, calls[i].Function.Name, calls[i].Function.Arguments)
		}
	}
}
