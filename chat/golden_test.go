package chat

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const tinyDir = "../testdata/tiny"

type goldenCase struct {
	Messages            []Message       `json:"messages"`
	Tools               []Tool          `json:"tools"`
	Options             json.RawMessage `json:"options"`
	AddGenerationPrompt bool            `json:"add_generation_prompt"`
	Rendered            string          `json:"rendered"`
	IDs                 []int           `json:"ids"`
}

func loadGolden(t *testing.T) []goldenCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(tinyDir, "golden", "chat.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Reference string       `json:"reference"`
		Cases     []goldenCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Cases) == 0 {
		t.Fatal("golden file has no cases")
	}
	return g.Cases
}

func (c goldenCase) renderOptions(t *testing.T) RenderOptions {
	t.Helper()
	opts := RenderOptions{AddGenerationPrompt: c.AddGenerationPrompt}
	var extra map[string]any
	if len(c.Options) > 0 {
		if err := json.Unmarshal(c.Options, &extra); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range extra {
		if k == "enable_thinking" {
			b, ok := v.(bool)
			if !ok {
				t.Fatalf("enable_thinking option is %T", v)
			}
			opts.EnableThinking = &b
			continue
		}
		if opts.Vars == nil {
			opts.Vars = map[string]any{}
		}
		opts.Vars[k] = v
	}
	return opts
}

// thinking reads enable_thinking from the case options without a *testing.T,
// for use off the test goroutine.
func (c goldenCase) thinking() *bool {
	var o struct {
		EnableThinking *bool `json:"enable_thinking"`
	}
	_ = json.Unmarshal(c.Options, &o)
	return o.EnableThinking
}

func TestGoldenRender(t *testing.T) {
	cases := loadGolden(t)
	sources := map[string]func() (*Template, error){
		"dir": func() (*Template, error) { return LoadTemplate(filepath.Join(tinyDir, "tokenizer")) },
		"tokenizer_config": func() (*Template, error) {
			// Force the tokenizer_config.json path by loading from a copy
			// without chat_template.jinja.
			dir := t.TempDir()
			data, err := os.ReadFile(filepath.Join(tinyDir, "tokenizer", "tokenizer_config.json"))
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), data, 0o644); err != nil {
				return nil, err
			}
			return LoadTemplate(dir)
		},
	}
	for srcName, load := range sources {
		tpl, err := load()
		if err != nil {
			t.Fatalf("%s: %v", srcName, err)
		}
		passed := 0
		for i, c := range cases {
			t.Run(fmt.Sprintf("%s/%d", srcName, i), func(t *testing.T) {
				got, err := tpl.Render(c.Messages, c.Tools, c.renderOptions(t))
				if err != nil {
					t.Fatal(err)
				}
				if got != c.Rendered {
					t.Fatalf("render mismatch at byte %d\n got: %q\nwant: %q", firstDiff(got, c.Rendered), got, c.Rendered)
				}
				passed++
			})
		}
		t.Logf("%s: %d/%d golden cases byte-identical", srcName, passed, len(cases))
	}
}

func firstDiff(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// The template file and the tokenizer_config.json copy must be the same
// template, or the two load paths above would test different things.
func TestTemplateSourcesAgree(t *testing.T) {
	jinjaSrc, err := os.ReadFile(filepath.Join(tinyDir, "tokenizer", "chat_template.jinja"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := readJSONFile(filepath.Join(tinyDir, "tokenizer", "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var field string
	if err := json.Unmarshal(cfg["chat_template"], &field); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(field) != strings.TrimSpace(string(jinjaSrc)) {
		t.Fatal("chat_template.jinja and tokenizer_config.json chat_template differ")
	}
}
