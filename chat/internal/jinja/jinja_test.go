package jinja

import (
	"errors"
	"strings"
	"testing"
)

func render(t *testing.T, src string, vars map[string]any) (string, error) {
	t.Helper()
	tpl, err := Parse(src)
	if err != nil {
		return "", err
	}
	return tpl.Render(vars)
}

func TestErrorsNameTheLine(t *testing.T) {
	for src, want := range map[string]string{
		"a\nb\n{{ x.y }}":                                 "line 3: 'x' is undefined",
		"\n{% for a, b in [1] %}{% endfor %}":             "line 2: cannot unpack",
		"\n\n{% set n.a = 1 %}":                           "line 3: cannot assign attribute 'a' on 'n'",
		"{{ 'a' * 100000000 }}":                           "too large",
		"{{ range(1000000)|length }}":                     "range() is too big",
		"{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}": "maximum recursion depth",
		"{% include 'x' %}":                               "tag 'include' is not supported",
		"{{ f(*args) }}":                                  "*args and **kwargs",
		"{{ 9223372036854775807 + 1 }}":                   "overflows 64 bits",
		"{{ [1][::0] }}":                                  "slice step cannot be zero",
		"{# open":                                         "unterminated comment",
		"{{ x ":                                           "unclosed tag",
	} {
		_, err := render(t, src, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to contain %q", src, err, want)
		}
	}
}

func TestRaiseException(t *testing.T) {
	_, err := render(t, "{{ raise_exception('bad ' ~ 1) }}", nil)
	var ex *ExceptionError
	if !errors.As(err, &ex) || ex.Message != "bad 1" {
		t.Fatalf("got %v", err)
	}
}

// Callers' variables shadow the built-in globals, as in Jinja.
func TestVarsShadowGlobals(t *testing.T) {
	got, err := render(t, "{{ range }}", map[string]any{"range": "mine"})
	if err != nil || got != "mine" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestFromJSON(t *testing.T) {
	v, err := FromJSON([]byte(`{"b": 1, "a": [1.0, 1e2, -0, 18446744073709551616, "x", null, true], "b": 2}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ToJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	// Python keeps a duplicate key at its first position with the last value.
	if want := `{"b": 2, "a": [1.0, 100.0, 0, 18446744073709551616, "x", null, true]}`; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	for _, bad := range []string{`{"a":`, `[1] [2]`, `{"a": 1} x`, ``} {
		if _, err := FromJSON([]byte(bad)); err == nil {
			t.Errorf("FromJSON(%q) succeeded", bad)
		}
	}
}

func TestPyFloat(t *testing.T) {
	for f, want := range map[float64]string{
		1: "1.0", 0.1: "0.1", 1e16: "1e+16", 1e15: "1000000000000000.0", 1e-4: "0.0001",
		1e-5: "1e-05", 123.456: "123.456", -2.5e-10: "-2.5e-10", 1.5e300: "1.5e+300",
	} {
		if got := pyFloat(f); got != want {
			t.Errorf("pyFloat(%v) = %q, want %q", f, got, want)
		}
	}
}

// FuzzTemplate: arbitrary template source must never panic, whether it
// parses or not.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		"{% for x in xs %}{{ loop.index }}{{ x|tojson }}{% endfor %}",
		"{%- if a is defined and a.b[0] not in c -%}{{ a ~ 'x' }}{% elif d %}{% else %}{% endif %}",
		"{% macro m(a, b=1) %}{{ caller }}{% endmacro %}{{ m(1, b=2)|trim }}",
		"{% set ns = namespace(x=1) %}{% set ns.x = ns.x * 2 %}{{ ns.x }}{{ xs[::-1] }}",
		"{{ 'a'.split('b')[-1].strip() }}{# c #}{% raw %}{{{% endraw %}",
	} {
		f.Add(s)
	}
	vars := map[string]any{"xs": []any{int64(1), "two", NewDict()}, "a": NewDict(), "c": "str"}
	f.Fuzz(func(t *testing.T, src string) {
		tpl, err := Parse(src)
		if err != nil {
			return
		}
		_, _ = tpl.Render(vars)
	})
}

func TestHostileNesting(t *testing.T) {
	deep := strings.Repeat("(", 100000) + "1" + strings.Repeat(")", 100000)
	if _, err := render(t, "{{ "+deep+" }}", nil); err == nil || !strings.Contains(err.Error(), "nests more than") {
		t.Fatalf("deep expression: %v", err)
	}
	blocks := strings.Repeat("{% if 1 %}", 100000)
	if _, err := render(t, blocks, nil); err == nil || !strings.Contains(err.Error(), "nests more than") {
		t.Fatalf("deep blocks: %v", err)
	}
	nots := strings.Repeat("not ", 100000) + "1"
	if _, err := render(t, "{{ "+nots+" }}", nil); err == nil {
		t.Fatal("deep not chain accepted")
	}
	got, err := render(t, "{% set ns = namespace() %}{% set ns.me = ns %}{{ (ns ~ '')[:10] }}", nil)
	if err != nil || got != "<Namespace" {
		t.Fatalf("self-referencing namespace: %q, %v", got, err)
	}
}
