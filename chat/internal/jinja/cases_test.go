package jinja

import (
	"encoding/json"
	"os"
	"testing"
)

// TestJinjaCompat compares against outputs recorded from Jinja2 in Hugging
// Face's chat-template environment (testdata/gen_cases.py).
func TestJinjaCompat(t *testing.T) {
	data, err := os.ReadFile("testdata/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vars  json.RawMessage `json:"vars"`
		Cases []struct {
			Template string  `json:"template"`
			Output   *string `json:"output"`
			Error    string  `json:"error"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	vars, err := FromJSON(file.Vars)
	if err != nil {
		t.Fatal(err)
	}
	ctx := map[string]any{}
	for _, k := range vars.(*Dict).Keys() {
		ctx[k], _ = vars.(*Dict).Get(k)
	}
	for _, c := range file.Cases {
		tpl, err := Parse(c.Template)
		var got string
		if err == nil {
			got, err = tpl.Render(ctx)
		}
		switch {
		case c.Output == nil && err == nil:
			t.Errorf("template %q: want error like %q, got output %q", c.Template, c.Error, got)
		case c.Output != nil && err != nil:
			t.Errorf("template %q: unexpected error: %v", c.Template, err)
		case c.Output != nil && got != *c.Output:
			t.Errorf("template %q:\n got %q\nwant %q", c.Template, got, *c.Output)
		case c.Output == nil:
			t.Logf("template %q: error %v (jinja2: %s)", c.Template, err, c.Error)
		}
	}
}
