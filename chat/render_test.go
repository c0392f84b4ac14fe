package chat

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRenderCases covers conversations beyond the checkpoint golden file,
// with expected text from real Jinja2 in Hugging Face's environment
// (testdata/gen_render_cases.py).
func TestRenderCases(t *testing.T) {
	tpl, err := LoadTemplate(filepath.Join(tinyDir, "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("testdata/render_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Cases []struct {
			Name string `json:"name"`
			goldenCase
			Rendered   *string `json:"rendered"`
			Error      string  `json:"error"`
			Qwen3      *string `json:"qwen3"`
			Qwen3Error string  `json:"qwen3_error"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	qwen3, err := LoadTemplate("../testdata/qwen3-tokenizer")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range file.Cases {
		if c.Qwen3 != nil {
			t.Run("qwen3/"+c.Name, func(t *testing.T) {
				got, err := qwen3.Render(c.Messages, c.Tools, c.renderOptions(t))
				if err != nil {
					t.Fatal(err)
				}
				if got != *c.Qwen3 {
					t.Fatalf("mismatch at byte %d\n got: %q\nwant: %q", firstDiff(got, *c.Qwen3), got, *c.Qwen3)
				}
			})
		}
		t.Run(c.Name, func(t *testing.T) {
			got, err := tpl.Render(c.Messages, c.Tools, c.renderOptions(t))
			if c.Rendered == nil {
				if err == nil {
					t.Fatalf("want error %q, got output %q", c.Error, got)
				}
				// The template's own raise_exception message must come through.
				msg := c.Error[strings.Index(c.Error, ": ")+2:]
				if !strings.Contains(err.Error(), msg) {
					t.Fatalf("error %q does not carry the template message %q", err, msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != *c.Rendered {
				t.Fatalf("mismatch at byte %d\n got: %q\nwant: %q", firstDiff(got, *c.Rendered), got, *c.Rendered)
			}
		})
	}
}
