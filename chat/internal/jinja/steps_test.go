package jinja

import (
	"fmt"
	"strings"
	"testing"
)

// TestStepLimit: a template that would loop or recurse for hours without
// writing anything (nested range loops, filtered or not, a macro calling
// itself twice at every level) stops with an error naming the limit (here
// lowered to 100,000 steps); a template within it renders.
func TestStepLimit(t *testing.T) {
	defer func(n int) { maxSteps = n }(maxSteps)
	maxSteps = 100_000
	for name, src := range map[string]string{
		"nested loops":       `{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x`,
		"filtered loops":     `{% for i in range(100000) %}{% for j in range(100000) if j < 0 %}{% endfor %}{% endfor %}x`,
		"doubling recursion": `{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(100) }}`,
	} {
		tp, err := Parse(src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := tp.Render(map[string]any{}); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("more than %d loop iterations and macro calls", maxSteps)) {
			t.Errorf("%s: %v, want the step limit's error", name, err)
		}
	}
	// 300 + 300 × 300 iterations and 2^13 − 1 macro calls: within the limit.
	tp, err := Parse(`{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}` +
		`{% for i in range(300) %}{% for j in range(300) %}{% endfor %}{% endfor %}{{ f(12) }}ok`)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := tp.Render(map[string]any{}); err != nil || out != "ok" {
		t.Errorf("within the limit: %q, %v", out, err)
	}
}
