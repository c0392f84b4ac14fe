package chat

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var userHi = []Message{{Role: "user", Content: "hi"}}

func TestLoadTemplatePrecedence(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"chat_template.jinja":   "jinja {{ eos_token }}|{{ bos_token }}|{{ pad_token }}",
		"chat_template.json":    `{"chat_template": "json"}`,
		"tokenizer_config.json": `{"chat_template": "cfg", "eos_token": {"content": "<eos>", "special": true}, "bos_token": null, "pad_token": "<pad>"}`,
	})
	for _, step := range []struct{ remove, want string }{
		{"", "jinja <eos>||<pad>"},
		{"chat_template.jinja", "json"},
		{"chat_template.json", "cfg"},
	} {
		if step.remove != "" {
			if err := os.Remove(filepath.Join(dir, step.remove)); err != nil {
				t.Fatal(err)
			}
		}
		tpl, err := LoadTemplate(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := tpl.Render(userHi, nil, RenderOptions{}); err != nil || got != step.want {
			t.Fatalf("after removing %q: got %q, %v; want %q", step.remove, got, err, step.want)
		}
	}
}

func TestLoadTemplateNamedVariants(t *testing.T) {
	dir := writeFiles(t, map[string]string{"tokenizer_config.json": `{"chat_template": [
		{"name": "default", "template": "plain"},
		{"name": "tool_use", "template": "tools={{ tools|length }}"}]}`})
	tpl, err := LoadTemplate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := tpl.Render(userHi, nil, RenderOptions{}); got != "plain" {
		t.Fatalf("without tools got %q", got)
	}
	if got, _ := tpl.Render(userHi, []Tool{{Function: ToolFunction{Name: "f"}}}, RenderOptions{}); got != "tools=1" {
		t.Fatalf("with tools got %q", got)
	}
}

func TestLoadTemplateErrors(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"no chat template":                           {"tokenizer_config.json": `{"eos_token": "x"}`},
		"tokenizer_config.json":                      {"tokenizer_config.json": `{not json`},
		"has no \"default\"":                         {"tokenizer_config.json": `{"chat_template": [{"name": "tool_use", "template": "x"}]}`},
		"chat_template.jinja: chat template: line 2": {"chat_template.jinja": "ok\n{% if %}"},
	} {
		_, err := LoadTemplate(writeFiles(t, files))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("want error containing %q, got %v", name, err)
		}
	}
}

func TestRenderOptionsAndErrors(t *testing.T) {
	tpl, err := ParseTemplate("{{ greeting }} {{ enable_thinking }} {{ add_generation_prompt }} {{ cfg.level }}")
	if err != nil {
		t.Fatal(err)
	}
	on := true
	got, err := tpl.Render(userHi, nil, RenderOptions{AddGenerationPrompt: true, EnableThinking: &on,
		Vars: map[string]any{"greeting": "hey", "cfg": map[string]int{"level": 2}}})
	if err != nil || got != "hey True True 2" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := tpl.Render(userHi, nil, RenderOptions{Vars: map[string]any{"messages": 1}}); err == nil || !strings.Contains(err.Error(), `"messages" is set by Render`) {
		t.Fatalf("reserved var: %v", err)
	}

	qwen, err := LoadTemplate(filepath.Join(tinyDir, "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	bad := []Message{{Role: "user", Content: "x"}, {Role: "assistant", ToolCalls: []ToolCall{{Function: FunctionCall{Name: "f", Arguments: "[1, 2]"}}}}}
	if _, err := qwen.Render(bad, nil, RenderOptions{}); err == nil || !strings.Contains(err.Error(), "messages[1].tool_calls[0].function.arguments: expected a JSON object") {
		t.Fatalf("non-object arguments: %v", err)
	}
	if _, err := qwen.Render(nil, nil, RenderOptions{}); err == nil || err.Error() != "chat template rejected the conversation: No messages provided." {
		t.Fatalf("template exception: %v", err)
	}
	badTool := []Tool{{Function: ToolFunction{Name: "f", Parameters: []byte(`{"a":`)}}}
	if _, err := qwen.Render(userHi, badTool, RenderOptions{}); err == nil || !strings.Contains(err.Error(), "tools[0].function.parameters") {
		t.Fatalf("bad tool schema: %v", err)
	}
}

// Servers render concurrently from one Template.
func TestRenderConcurrent(t *testing.T) {
	tpl, err := LoadTemplate(filepath.Join(tinyDir, "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	cases := loadGolden(t)
	done := make(chan error, 8)
	for w := range 8 {
		go func() {
			for i := range 20 {
				c := cases[(w+i)%len(cases)]
				got, err := tpl.Render(c.Messages, c.Tools, RenderOptions{AddGenerationPrompt: c.AddGenerationPrompt, EnableThinking: c.thinking()})
				if err == nil && got != c.Rendered {
					err = fmt.Errorf("case %d rendered differently under concurrency", (w+i)%len(cases))
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
